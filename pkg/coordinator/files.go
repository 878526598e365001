package coordinator

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/dispatch"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// backupFiles backs up a directory tree: the reader of its host scans it,
// files unchanged since the parent snapshot (same size, mtime and inode) keep
// their content without being read, the rest are packed into chunks that
// readers read and compressors store like volume chunks. It returns the
// manifest.
func (jr *jobRun) backupFiles(ctx context.Context, repo *repository.Repository) (*manifest.Snapshot, error) {
	req := jr.job.Backup
	jr.job.Progress = queue.Progress{}
	if err := jr.start(ctx); err != nil {
		return nil, err
	}
	jr.c.publishEvent(ctx, jr.job, "scanning "+req.Source.String())
	// Which snapshot is the parent does not depend on the scan, and loading
	// a large tree's manifest takes about as long as scanning the tree:
	// both at once.
	type parentPlan struct {
		snap     *manifest.Snapshot
		unusable map[int]bool
	}
	parentc := make(chan parentPlan, 1)
	go func() {
		p := parentPlan{snap: jr.parent(ctx, repo, manifest.ModeFiles)}
		if p.snap != nil {
			var err error
			if p.unusable, err = repo.MissingChunks(ctx, p.snap.Chunks); err != nil {
				jr.logger.WarnContext(ctx, "no parent snapshot: checking its chunks failed", "parent", p.snap.ID, "err", err)
				p.snap = nil
			} else if len(p.unusable) > 0 {
				jr.logger.WarnContext(ctx, "parent snapshot names chunks that are not stored whole; their files are read again",
					"parent", p.snap.ID, "chunks", len(p.unusable))
			}
		}
		parentc <- p
	}()
	err := jr.phase(ctx, single(dispatch.Unit{Op: queue.OpScan}), func(ctx context.Context, _ dispatch.Unit, attempt int, msgID string) error {
		item := &queue.ScanItem{V: queue.MessageVersion, JobID: jr.job.ID, Path: req.Source.Path, Attempt: attempt}
		_, err := jr.c.js.Publish(ctx, queue.ScanSubject(req.Source.Host, jr.job.ID), queue.Encode(item), jetstream.WithMsgID(msgID))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", req.Source, err)
	}
	entries, scanProblems, err := jr.scanned()
	if err != nil {
		return nil, err
	}
	parent := <-parentc
	fp := plan.Files(entries, parent.snap, parent.unusable, req.ChunkSize)
	// A resumed job has counted the packs it replayed as done.
	jr.job.Progress.ChunksTotal, jr.job.Progress.BytesTotal = len(fp.Packs), fp.ReadBytes
	jr.logger.InfoContext(ctx, "tree scanned", "entries", len(entries), "new", fp.NewFiles, "changed", fp.Changed,
		"unchanged", fp.Unchanged, "chunks", len(fp.Packs), "read_bytes", fp.ReadBytes)
	if err := jr.c.saveJob(ctx, jr.job); err != nil {
		return nil, err
	}
	subject := queue.ReadSubject(req.Source.Host, jr.job.ID)
	err = jr.phase(ctx, indexes(queue.OpRead, len(fp.Packs)), func(ctx context.Context, u dispatch.Unit, _ int, msgID string) error {
		item := &queue.ReadItem{
			V: queue.MessageVersion, JobID: jr.job.ID, Path: req.Source.Path, Index: u.Index,
			Length: fp.Packs[u.Index].Length, Repo: req.Repo, Pieces: fp.Pieces(u.Index),
		}
		_, err := jr.c.js.Publish(ctx, subject, queue.Encode(item), jetstream.WithMsgID(msgID))
		return err
	})
	if err != nil {
		return nil, err
	}
	problems := make(map[string]plan.Problem)
	jr.mu.Lock()
	for u, d := range jr.done {
		if u.Op == queue.OpProblems {
			for _, p := range d.Problems {
				if old, ok := problems[p.Path]; !ok || p.Unread && !old.Unread {
					problems[p.Path] = plan.Problem{Unread: p.Unread, Warning: p.Error}
				}
			}
		}
	}
	jr.mu.Unlock()
	snap := &manifest.Snapshot{
		Version: manifest.VersionFor(manifest.ModeFiles), ID: jr.job.SnapshotID, JobID: jr.job.ID, Time: jr.job.Started,
		Host: req.Source.Host, Path: req.Source.Path, Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		ChunkSize: req.ChunkSize, Hash: "sha256", Compression: "zstd", Level: req.Level,
	}
	fp.Build(snap, func(i int) plan.Stored {
		d := jr.completion(dispatch.Unit{Op: queue.OpRead, Index: i})
		return plan.Stored{Hash: d.Hash, Length: d.Length, StoredSize: d.StoredSize, Zero: d.Zero, New: d.New}
	}, problems)
	snap.SetVersion()
	for _, p := range scanProblems {
		snap.Stats.Warnings++
		jr.warn(p.Error)
	}
	for _, e := range snap.Files {
		if e.Warning != "" {
			jr.warn(e.Path + ": " + e.Warning)
		}
	}
	snap.Stats.Seconds = time.Since(jr.job.Started).Seconds()
	return snap, nil
}

// warn adds to the job's warnings, up to queue.MaxWarnings.
func (jr *jobRun) warn(w string) {
	if len(jr.job.Warnings) < queue.MaxWarnings {
		jr.job.Warnings = append(jr.job.Warnings, w)
	}
}

// scanned assembles the entries of the scan that completed.
func (jr *jobRun) scanned() ([]manifest.Entry, []queue.FileProblem, error) {
	final := jr.completion(dispatch.Unit{Op: queue.OpScan})
	if final == nil {
		return nil, nil, errors.New("scan: no completion recorded")
	}
	var entries []manifest.Entry
	for i := range final.Batches {
		part := jr.completion(dispatch.Unit{Op: queue.OpScanPart, Target: final.Attempt, Index: i})
		if part == nil {
			return nil, nil, fmt.Errorf("scan: batch %d of %d missing", i, final.Batches)
		}
		entries = append(entries, part.Entries...)
		part.Entries = nil // one copy of a large listing is enough
	}
	if len(entries) == 0 || entries[0].Path != "." {
		return nil, nil, errors.New("scan: the listing does not start with the tree's root")
	}
	return entries, final.Problems, nil
}

func single(u dispatch.Unit) iter.Seq[dispatch.Unit] {
	return func(yield func(dispatch.Unit) bool) { yield(u) }
}

// indexes yields units 0..n-1 of op.
func indexes(op string, n int) iter.Seq[dispatch.Unit] {
	return func(yield func(dispatch.Unit) bool) {
		for i := range n {
			if !yield(dispatch.Unit{Op: op, Index: i}) {
				return
			}
		}
	}
}

// restoreFiles restores the selected part of a files-mode snapshot to every
// target, step by step (see restore.Tree).
func (jr *jobRun) restoreFiles(ctx context.Context, snap *manifest.Snapshot) error {
	req := jr.job.Restore
	selected, err := snap.Select(req.Paths)
	if err != nil {
		return err
	}
	rp := plan.Restore(snap, selected, len(req.Paths) == 0)
	targets := len(req.Targets)
	jr.job.Progress = queue.Progress{ChunksTotal: len(rp.Extents) * targets, BytesTotal: rp.Bytes * int64(targets)}
	jr.job.Warnings = nil
	for _, w := range rp.Warnings {
		jr.warn(w)
	}
	if err := jr.start(ctx); err != nil {
		return err
	}
	publish := func(ctx context.Context, u dispatch.Unit, _ int, msgID string) error {
		t := req.Targets[u.Target]
		item := &queue.WriteItem{
			V: queue.MessageVersion, JobID: jr.job.ID, Op: u.Op, Target: u.Target, Path: t.Path,
			Repo: req.Repo, Overwrite: req.Overwrite, Index: u.Index, Tree: true,
		}
		if u.Op == queue.WriteEntries {
			item.Keep = jr.c.otherRestores(jr.job.ID)
		}
		switch u.Op {
		case queue.WriteEntries:
			item.Entries = rp.Create[u.Index]
		case queue.WriteMetadata:
			item.Entries = rp.Metadata[u.Index]
		case queue.WriteLinks:
			item.Entries = rp.Links[u.Index]
		case queue.WriteDirs:
			item.Entries = rp.Dirs[u.Index]
		case queue.WriteExtents:
			w := rp.Extents[u.Index]
			item.Hash, item.Length, item.Parts = snap.Chunks[w.Chunk].Hash, snap.Chunks[w.Chunk].Length, w.Parts
		}
		_, err := jr.c.js.Publish(ctx, queue.WriteSubject(t.Host, jr.job.ID), queue.Encode(item), jetstream.WithMsgID(msgID))
		return err
	}
	steps := []struct {
		op string
		n  int
	}{
		{queue.WriteEntries, len(rp.Create)},
		{queue.WriteExtents, len(rp.Extents)},
		{queue.WriteMetadata, len(rp.Metadata)},
		{queue.WriteLinks, len(rp.Links)},
		{queue.WriteDirs, max(len(rp.Dirs), 1)}, // the last step also flushes
	}
	if len(rp.Dirs) == 0 {
		rp.Dirs = [][]manifest.Entry{nil}
	}
	for _, step := range steps {
		units := func(yield func(dispatch.Unit) bool) {
			for i := range step.n {
				for t := range targets {
					if !yield(dispatch.Unit{Op: step.op, Target: t, Index: i}) {
						return
					}
				}
			}
		}
		if err := jr.phase(ctx, units, publish); err != nil {
			jr.abortRestore(ctx, publish)
			return err
		}
	}
	jr.rate()
	jr.job.Stats = manifest.Stats{
		SourceBytes: rp.Bytes, Chunks: len(rp.Extents), Files: rp.Files, Warnings: len(rp.Warnings),
		Seconds: time.Since(jr.job.Started).Seconds(),
	}
	jr.purge(ctx, true)
	return nil
}
