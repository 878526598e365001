package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// backupResult is what `backup --json` prints.
type backupResult struct {
	SnapshotID  string  `json:"snapshot_id"`
	JobID       string  `json:"job_id"`
	Source      string  `json:"source"`
	SourceBytes int64   `json:"source_bytes"`
	StoredBytes int64   `json:"stored_bytes"`
	NewBytes    int64   `json:"new_bytes"`
	Chunks      int     `json:"chunks"`
	ZeroChunks  int     `json:"zero_chunks"`
	NewChunks   int     `json:"new_chunks"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mb_per_s"`
	Ratio       float64 `json:"ratio"`
	Mode        string  `json:"mode"`
	Reason      string  `json:"reason"`
	// Device is the block device read for a directory, if any.
	Device string `json:"device,omitempty"`
	// Files mode.
	Files          int `json:"files,omitempty"`
	NewFiles       int `json:"new_files,omitempty"`
	ChangedFiles   int `json:"changed_files,omitempty"`
	UnchangedFiles int `json:"unchanged_files,omitempty"`
	// HardLinks counts the files that are hard links of an earlier one:
	// with new, changed and unchanged files they make up Files.
	HardLinks int   `json:"hard_links,omitempty"`
	ReadBytes int64 `json:"read_bytes,omitempty"`
	// Excluded counts the entries the selection left out (a directory once).
	Excluded    int      `json:"excluded,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Warnings    int      `json:"warnings,omitempty"`
	WarningList []string `json:"warning_list,omitempty"`
}

func runBackup(ctx context.Context, e *env, args []string) (err error) {
	var c common
	chunkSize := config.Size(layout.DefaultChunkSize)
	fs := newFlagSet("backup", &c)
	fs.Var(&chunkSize, "chunk-size", "chunk size, a multiple of 4KiB (e.g. 4MiB, 24MiB)")
	level := fs.String("level", "fastest", "zstd level: fastest, default, better or best")
	mode := fs.String("mode", plan.ModeAuto, "auto, volume (a file or block device) or files (a directory, file by file)")
	threshold := fs.Int64("files-threshold", plan.DefaultFilesThreshold,
		"auto mode backs up a directory holding more files than this through its block device, when it is a mounted filesystem's root")
	sf := addSelectionFlags(fs)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one SOURCE, got %d arguments", len(pos))
	}
	if err := layout.CheckChunkSize(int64(chunkSize)); err != nil {
		return usageError("--chunk-size: %v", err)
	}
	if _, err := chunk.ParseLevel(*level); err != nil {
		return usageError("--level: %v", err)
	}
	switch *mode {
	case plan.ModeAuto, plan.ModeVolume, plan.ModeFiles:
	default:
		return usageError("--mode %q: want auto, volume or files", *mode)
	}
	if *threshold <= 0 {
		return usageError("--files-threshold must be positive")
	}
	sel, labels, err := sf.request()
	if err != nil {
		return err
	}
	if !sel.Empty() && *mode == plan.ModeVolume {
		return usageError("--mode volume reads the whole volume: --exclude, --exclude-file, --exclude-caches, --exclude-larger-than and --one-file-system need files mode")
	}
	repo, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	var acc *access
	if c.natsURL == "" { // a remote fleet holds its own keys
		if acc, err = backupAccess(ctx, &c, e, false); err != nil {
			return err
		}
	}
	s, err := openSession(ctx, &c, e.stderr, acc)
	if err != nil {
		return err
	}
	defer func() { err = s.finish(err) }()
	src, err := s.endpoint(pos[0])
	if err != nil {
		return err
	}
	jobID := newJobID()
	req := &queue.BackupRequest{
		V: queue.MessageVersion, JobID: jobID, Source: src, Repo: repo,
		ChunkSize: int64(chunkSize), Level: *level, Mode: *mode, FilesThreshold: *threshold,
		Selection: sel, Labels: labels,
	}
	ev, err := s.run(ctx, queue.SubjectRequestBackup, req, jobID, e.stderr, c.json)
	if err != nil {
		return err
	}
	if ev.State != queue.StateSucceeded {
		return errors.New(ev.Error)
	}
	st := ev.Stats
	res := backupResult{
		SnapshotID: ev.SnapshotID, JobID: jobID, Source: src.String(),
		SourceBytes: st.SourceBytes, StoredBytes: st.StoredBytes, NewBytes: st.NewBytes,
		Chunks: st.Chunks, ZeroChunks: st.ZeroChunks, NewChunks: st.NewChunks, Seconds: st.Seconds,
		Mode: ev.Mode, Reason: ev.Reason, Device: ev.Device, Files: st.Files, NewFiles: st.NewFiles, ChangedFiles: st.ChangedFiles,
		UnchangedFiles: st.UnchangedFiles, ReadBytes: st.ReadBytes, Warnings: st.Warnings, WarningList: ev.Warnings,
		Excluded: st.Excluded, Tags: labels.Tags,
	}
	if res.Mode == plan.ModeFiles {
		res.HardLinks = max(0, st.Files-st.NewFiles-st.ChangedFiles-st.UnchangedFiles)
	}
	if st.Seconds > 0 {
		res.MBps = float64(st.SourceBytes) / 1e6 / st.Seconds
	}
	if st.StoredBytes > 0 {
		res.Ratio = float64(st.SourceBytes) / float64(st.StoredBytes)
	}
	if c.json {
		if err := json.NewEncoder(e.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		printBackup(e, &res)
	}
	if res.Warnings > 0 {
		return &exitCodeError{code: exitWarnings, err: fmt.Errorf("snapshot %s saved with %s (files not read, changed while read, or skipped)", res.SnapshotID, plural(res.Warnings, "warning"))}
	}
	return nil
}

func printBackup(e *env, res *backupResult) {
	fmt.Fprintf(e.stdout, "snapshot %s saved\n", res.SnapshotID)
	fmt.Fprintf(e.stdout, "  mode    %s: %s\n", res.Mode, res.Reason)
	if res.Mode == plan.ModeFiles {
		links := ""
		if res.HardLinks > 0 {
			links = ", " + plural(res.HardLinks, "hard link")
		}
		fmt.Fprintf(e.stdout, "  files   %d: %d new, %d changed, %d unchanged%s; %s read of %s\n", res.Files, res.NewFiles,
			res.ChangedFiles, res.UnchangedFiles, links, config.FormatBytes(res.ReadBytes), config.FormatBytes(res.SourceBytes))
		if res.Excluded > 0 {
			fmt.Fprintf(e.stdout, "  excluded %s (a directory counts once)\n", plural(res.Excluded, "entry"))
		}
	} else {
		fmt.Fprintf(e.stdout, "  source  %s: %s in %s (%d all-zero, not stored)\n", res.Source, config.FormatBytes(res.SourceBytes), plural(res.Chunks, "chunk"), res.ZeroChunks)
	}
	fmt.Fprintf(e.stdout, "  stored  %s (%s new in %s), ratio %.2fx\n", config.FormatBytes(res.StoredBytes), config.FormatBytes(res.NewBytes), plural(res.NewChunks, "chunk"), res.Ratio)
	fmt.Fprintf(e.stdout, "  time    %.2fs, %.0f MB/s\n", res.Seconds, res.MBps)
	if len(res.Tags) > 0 {
		fmt.Fprintf(e.stdout, "  tags    %s\n", strings.Join(res.Tags, ", "))
	}
	printWarnings(e, res.Warnings, res.WarningList)
}

// printWarnings lists a job's warnings on stderr.
func printWarnings(e *env, n int, list []string) {
	if n == 0 {
		return
	}
	fmt.Fprintf(e.stderr, "warnings (%d):\n", n)
	for _, w := range list {
		fmt.Fprintf(e.stderr, "  %s\n", w)
	}
	if n > len(list) {
		fmt.Fprintf(e.stderr, "  ... and %d more (bulkctl ls shows them)\n", n-len(list))
	}
}
