package coordinator

import (
	"cmp"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// checkSelection validates what a backup request leaves out of a tree and
// how it labels the snapshot, and puts the labels in their recorded form.
func checkSelection(req *queue.BackupRequest) error {
	if err := req.Selection.Check(); err != nil {
		return err
	}
	if !req.Selection.Empty() && req.Mode == plan.ModeVolume {
		return fmt.Errorf("volume mode reads the whole volume: excludes, exclude_caches, exclude_larger_than and one_file_system need files mode")
	}
	return req.Labels.Normalize()
}

// selectMode adjusts automatic mode choice to a request that leaves parts
// of a tree out: only a backup file by file can, so a directory is never
// read through its device, and a volume is an error.
func selectMode(req *queue.BackupRequest, stat *queue.StatReply) (plan.Choice, bool, error) {
	if req.Selection.Empty() {
		return plan.Choice{}, false, nil
	}
	if stat.Kind != manifest.KindDir {
		return plan.Choice{}, true, fmt.Errorf("%s is a %s, backed up whole as a volume: %s apply to a directory backed up file by file",
			req.Source, stat.Kind, "excludes, exclude caches, exclude larger than and one file system")
	}
	return plan.Choice{Mode: plan.ModeFiles, Reason: fmt.Sprintf("%s is a directory and the backup leaves some of it out (%s): files mode",
		req.Source, req.Selection.Describe())}, true, nil
}

// snapshotHost is the host a backup's snapshot records: the request's
// Host, else the source's.
func snapshotHost(req *queue.BackupRequest) string {
	return cmp.Or(req.Host, req.Source.Host)
}

// label records the request's host and tags in snap.
func label(snap *manifest.Snapshot, req *queue.BackupRequest) {
	snap.Host, snap.Tags = snapshotHost(req), req.Tags
}
