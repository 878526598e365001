package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
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
}

func runBackup(ctx context.Context, e *env, args []string) error {
	var c common
	chunkSize := config.Size(plan.DefaultChunkSize)
	fs := newFlagSet("backup", &c)
	fs.Var(&chunkSize, "chunk-size", "chunk size, a multiple of 4KiB (e.g. 4MiB, 24MiB)")
	level := fs.String("level", "fastest", "zstd level: fastest, default, better or best")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one SOURCE, got %d arguments", len(pos))
	}
	if err := plan.CheckChunkSize(int64(chunkSize)); err != nil {
		return usageError("--chunk-size: %v", err)
	}
	if _, err := chunk.ParseLevel(*level); err != nil {
		return usageError("--level: %v", err)
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
	src, err := s.endpoint(pos[0])
	if err != nil {
		return err
	}
	jobID := newJobID()
	req := &queue.BackupRequest{
		V: queue.MessageVersion, JobID: jobID, Source: src, Repo: repo,
		ChunkSize: int64(chunkSize), Level: *level,
	}
	ev, err := s.run(ctx, queue.SubjectRequestBackup, req, jobID, e.stderr)
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
	}
	if st.Seconds > 0 {
		res.MBps = float64(st.SourceBytes) / 1e6 / st.Seconds
	}
	if st.StoredBytes > 0 {
		res.Ratio = float64(st.SourceBytes) / float64(st.StoredBytes)
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	fmt.Fprintf(e.stdout, "snapshot %s saved\n", res.SnapshotID)
	fmt.Fprintf(e.stdout, "  source  %s: %s in %d chunks (%d all-zero, not stored)\n", res.Source, config.FormatBytes(res.SourceBytes), res.Chunks, res.ZeroChunks)
	fmt.Fprintf(e.stdout, "  stored  %s (%s new in %d chunks), ratio %.2fx\n", config.FormatBytes(res.StoredBytes), config.FormatBytes(res.NewBytes), res.NewChunks, res.Ratio)
	fmt.Fprintf(e.stdout, "  time    %.2fs, %.0f MB/s\n", res.Seconds, res.MBps)
	return nil
}
