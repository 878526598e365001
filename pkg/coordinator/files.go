package coordinator

import (
	"context"
	"iter"
	"strings"
	"time"

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
	err := jr.phase(ctx, single(dispatch.Unit{Op: queue.OpScan}), func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error {
		item := &queue.ScanTree{V: queue.WorkVersion, JobID: jr.job.ID, Path: req.Source.Path, Attempt: attempt}
		return jr.sendWork(ctx, u.Op, req.Source.Host, item, msgID)
	})
	if err != nil {
		return nil, err
	}
	scan, entries, err := jr.rec.scanned()
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
	err = jr.phase(ctx, indexes(queue.OpRead, len(fp.Packs)), func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error {
		item := &queue.ReadChunk{
			V: queue.WorkVersion, JobID: jr.job.ID, Index: u.Index, Attempt: attempt, Repo: req.Repo, Path: req.Source.Path,
			Length: fp.Packs[u.Index].Length, Pieces: fp.Pieces(u.Index),
		}
		return jr.sendWork(ctx, u.Op, req.Source.Host, item, msgID)
	})
	if err != nil {
		return nil, err
	}
	problems := make(map[string]plan.Problem)
	for _, p := range jr.rec.fileProblems() {
		if old, ok := problems[p.Path]; !ok || p.Unread && !old.Unread {
			problems[p.Path] = plan.Problem{Unread: p.Unread, Warning: p.Err}
		}
	}
	snap := &manifest.Snapshot{
		Version: manifest.VersionFor(manifest.ModeFiles), ID: jr.job.SnapshotID, JobID: jr.job.ID, Time: jr.job.Started,
		Host: req.Source.Host, Path: req.Source.Path, Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		ChunkSize: req.ChunkSize, Hash: "sha256", Compression: "zstd", Level: req.Level,
	}
	fp.Build(snap, func(i int) plan.Stored {
		d := jr.rec.chunk(i)
		return plan.Stored{Hash: d.Hash, Length: d.Length, StoredSize: d.StoredSize, Zero: d.Zero, New: d.New}
	}, problems)
	snap.SetVersion()
	for _, w := range scan.Warnings {
		snap.Stats.Warnings++
		jr.warn(w)
	}
	for _, e := range snap.Files {
		if e.Warning != "" {
			jr.warn(manifest.Display(e.Path) + ": " + e.Warning)
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
	// A path may come as it was on the host (a CI client's request):
	// relative to the backed-up directory is the manifest's form.
	paths := make([]string, len(req.Paths))
	for i, p := range req.Paths {
		if paths[i] = p; strings.HasPrefix(p, "/") {
			paths[i] = manifest.TreePath(snap.Path, p)
		}
	}
	selected, err := snap.Select(paths)
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
		step := queue.Step{V: queue.WorkVersion, JobID: jr.job.ID, Target: u.Target, Index: u.Index, Path: t.Path}
		var item any
		switch u.Op {
		case queue.OpExtents:
			w := rp.Extents[u.Index]
			item = &queue.WriteExtents{Step: step, Repo: req.Repo, Overwrite: req.Overwrite,
				Hash: snap.Chunks[w.Chunk].Hash, Length: snap.Chunks[w.Chunk].Length, Parts: w.Parts}
		case queue.OpAbort:
			item = &queue.AbortRestore{Step: step, Tree: true}
		default:
			te := &queue.TreeEntries{Step: step, Overwrite: req.Overwrite}
			switch u.Op {
			case queue.OpEntries:
				te.Entries, te.Keep = rp.Create[u.Index], jr.c.otherRestores(jr.job.ID)
			case queue.OpMetadata:
				te.Entries = rp.Metadata[u.Index]
			case queue.OpLinks:
				te.Entries = rp.Links[u.Index]
			case queue.OpDirs:
				te.Entries = rp.Dirs[u.Index]
			}
			item = te
		}
		return jr.sendWork(ctx, u.Op, t.Host, item, msgID)
	}
	steps := []struct {
		op string
		n  int
	}{
		{queue.OpEntries, len(rp.Create)},
		{queue.OpExtents, len(rp.Extents)},
		{queue.OpMetadata, len(rp.Metadata)},
		{queue.OpLinks, len(rp.Links)},
		{queue.OpDirs, max(len(rp.Dirs), 1)}, // the last step also flushes
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
