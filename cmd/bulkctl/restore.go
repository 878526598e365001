package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// restoreResult is what `restore --json` prints.
type restoreResult struct {
	SnapshotID string   `json:"snapshot_id"`
	JobID      string   `json:"job_id"`
	Targets    []string `json:"targets"`
	Bytes      int64    `json:"bytes"`
	Seconds    float64  `json:"seconds"`
	MBps       float64  `json:"mb_per_s"`
}

func runRestore(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("restore", &c)
	overwrite := fs.Bool("overwrite", false, "replace existing target files")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError("want SNAPSHOT and at least one TARGET")
	}
	repo, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	s, err := openSession(ctx, &c, e.stderr)
	if err != nil {
		return err
	}
	defer s.close()
	req := &queue.RestoreRequest{V: queue.MessageVersion, JobID: newJobID(), Repo: repo, Snapshot: pos[0], Overwrite: *overwrite}
	res := restoreResult{JobID: req.JobID}
	for _, arg := range pos[1:] {
		t, err := s.endpoint(arg)
		if err != nil {
			return err
		}
		req.Targets = append(req.Targets, t)
		res.Targets = append(res.Targets, t.String())
	}
	ev, err := s.run(ctx, queue.SubjectRequestRestore, req, req.JobID, e.stderr)
	if err != nil {
		return err
	}
	if ev.State != queue.StateSucceeded {
		return errors.New(ev.Error)
	}
	res.SnapshotID, res.Bytes, res.Seconds = ev.SnapshotID, ev.Stats.SourceBytes*int64(len(req.Targets)), ev.Stats.Seconds
	if res.Seconds > 0 {
		res.MBps = float64(res.Bytes) / 1e6 / res.Seconds
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	for _, t := range res.Targets {
		fmt.Fprintf(e.stdout, "restored snapshot %s to %s\n", res.SnapshotID, t)
	}
	fmt.Fprintf(e.stdout, "  %s in %.2fs, %.0f MB/s\n", config.FormatBytes(res.Bytes), res.Seconds, res.MBps)
	return nil
}
