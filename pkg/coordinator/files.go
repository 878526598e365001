package coordinator

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
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
		id       string
		listing  *manifest.Listing
		unusable map[int]bool
	}
	parentc := make(chan parentPlan, 1)
	go func() {
		var p parentPlan
		defer func() { parentc <- p }()
		if p.id = jr.parentID(ctx, repo, manifest.ModeFiles); p.id == "" {
			return
		}
		_, listing, err := repo.LoadListing(ctx, p.id)
		if err != nil {
			jr.logger.WarnContext(ctx, "no parent snapshot: loading it failed", "parent", p.id, "err", err)
			return
		}
		if p.unusable, err = repo.MissingChunks(ctx, listing.Chunks()); err != nil {
			jr.logger.WarnContext(ctx, "no parent snapshot: checking its chunks failed", "parent", p.id, "err", err)
			return
		}
		if len(p.unusable) > 0 {
			jr.logger.WarnContext(ctx, "parent snapshot names chunks that are not stored whole; their files are read again",
				"parent", p.id, "chunks", len(p.unusable))
		}
		jr.logger.InfoContext(ctx, "incremental backup", "parent", p.id)
		p.listing = listing
	}()
	err := jr.phase(ctx, single(dispatch.Unit{Op: queue.OpScan}), func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error {
		item := &queue.ScanTree{V: queue.WorkVersion, JobID: jr.job.ID, Path: req.Source.Path, Attempt: attempt,
			Selection: req.Selection, Repo: req.Repo}
		return jr.sendWork(ctx, u.Op, req.Source.Host, item, msgID)
	})
	if err != nil {
		return nil, err
	}
	scanDone, scan, err := jr.rec.scanned()
	if err != nil {
		return nil, err
	}
	parent := <-parentc
	fp, err := plan.Files(scan, parent.listing, parent.unusable, req.ChunkSize)
	if err != nil {
		return nil, err
	}
	if parent.listing != nil && parent.listing.Err() != nil {
		jr.logger.WarnContext(ctx, "parent snapshot read in part: the files after where it stopped are read again",
			"parent", parent.id, "err", parent.listing.Err())
	}
	parent.listing = nil // walked: let go
	// A resumed job has counted the packs it replayed as done.
	jr.job.Progress.ChunksTotal, jr.job.Progress.BytesTotal = len(fp.Packs), fp.ReadBytes
	jr.logger.InfoContext(ctx, "tree scanned", "entries", scan.Len(), "new", fp.NewFiles, "changed", fp.Changed,
		"unchanged", fp.Unchanged, "chunks", len(fp.Packs), "read_bytes", fp.ReadBytes)
	if err := jr.c.saveJob(ctx, jr.job); err != nil {
		return nil, err
	}
	err = jr.phase(ctx, indexes(queue.OpRead, len(fp.Packs)), func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error {
		pieces, err := fp.Pieces(u.Index)
		if err != nil {
			return err
		}
		item := &queue.ReadChunk{
			V: queue.WorkVersion, JobID: jr.job.ID, Index: u.Index, Attempt: attempt, Repo: req.Repo, Path: req.Source.Path,
			Length: fp.Packs[u.Index].Length, Pieces: pieces, Sealed: repo.Encrypted(),
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
		ID: jr.job.SnapshotID, JobID: jr.job.ID, Time: jr.job.Started,
		Host: req.Source.Host, Path: req.Source.Path, Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		ChunkSize: req.ChunkSize, Hash: "sha256", Compression: "zstd", Level: req.Level,
	}
	label(snap, req)
	// The entries go into directory objects as they are built: the tree
	// is never held whole.
	tw := repo.NewTreeWriter(ctx, snap.ID)
	var warned []string
	err = fp.Build(snap, func(i int) plan.Stored {
		d := jr.rec.chunk(i)
		return plan.Stored{Hash: d.Hash, Length: d.Length, StoredSize: d.StoredSize, Zero: d.Zero, New: d.New}
	}, problems, func(e *manifest.Entry) error {
		if e.Warning != "" && len(warned) < queue.MaxWarnings {
			warned = append(warned, manifest.Display(e.Path)+": "+e.Warning)
		}
		return tw.Add(e.Path, snap.ToTreeEntry(*e))
	})
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	root, err := tw.Close()
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if tw.Size() != snap.Size {
		return nil, fmt.Errorf("commit: the files hold %d bytes, the snapshot says %d", tw.Size(), snap.Size)
	}
	snap.Version, snap.Root, snap.Chunks = manifest.VersionTrees, &root, nil
	snap.Stats.Excluded = scanDone.Excluded
	for _, w := range scanDone.Warnings {
		snap.Stats.Warnings++
		jr.warn(w)
	}
	for _, w := range warned {
		jr.warn(w)
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

// restoreFiles restores the selected part of a files-mode snapshot, whose
// entries listing holds, to every target, step by step (see restore.Tree).
//
// A chunk found damaged or missing does not stop it: the files whose
// content lies in it (and hard links to them) are left out, named in the
// job's warnings, and the chunk is recorded in the damage registry; every
// other file is restored.
func (jr *jobRun) restoreFiles(ctx context.Context, repo *repository.Repository, snap *manifest.Snapshot, listing *manifest.Listing) error {
	req := jr.job.Restore
	// A path may come as it was on the host (a CI client's request):
	// relative to the backed-up directory is the manifest's form.
	paths := make([]string, len(req.Paths))
	for i, p := range req.Paths {
		if paths[i] = p; strings.HasPrefix(p, "/") {
			paths[i] = manifest.TreePath(snap.Path, p)
		}
	}
	rp, err := plan.Restore(snap, listing, paths)
	if err != nil {
		return err
	}
	listing = nil // walked: let go
	var (
		mu     sync.Mutex
		failed = make(map[string]string) // files not restored, and why
	)
	jr.tolerate = func(u dispatch.Unit, we *WorkError) bool {
		code := we.Code()
		if u.Op != queue.OpExtents || u.Index >= len(rp.Extents) || code != queue.CodeCorrupt && code != queue.CodeMissing {
			return false
		}
		parts, err := rp.Parts(u.Index)
		if err != nil {
			return false
		}
		hash := rp.Chunks[rp.Extents[u.Index].Chunk].Hash
		jr.recordRestoreDamage(ctx, repo, we, hash)
		why := fmt.Sprintf("not restored: chunk %s is %s", hash, map[queue.Code]string{queue.CodeCorrupt: "damaged", queue.CodeMissing: "missing"}[code])
		mu.Lock()
		defer mu.Unlock()
		for _, p := range parts {
			failed[p.Path] = why
		}
		jr.logger.WarnContext(ctx, "files of a damaged chunk are left out", "chunk_id", hash, "files", len(parts), "err", we)
		return true
	}
	defer func() { jr.tolerate = nil }()
	without := func(entries []manifest.Entry) []manifest.Entry {
		mu.Lock()
		defer mu.Unlock()
		if len(failed) == 0 {
			return entries
		}
		return slices.DeleteFunc(entries, func(e manifest.Entry) bool { return failed[e.Path] != "" })
	}
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
			parts, err := rp.Parts(u.Index)
			if err != nil {
				return err
			}
			c := rp.Chunks[rp.Extents[u.Index].Chunk]
			item = &queue.WriteExtents{Step: step, Repo: req.Repo, Overwrite: req.Overwrite, Hash: c.Hash, Length: c.Length, Parts: parts}
		case queue.OpAbort:
			item = &queue.AbortRestore{Step: step, Tree: true}
		default:
			te := &queue.TreeEntries{Step: step, Overwrite: req.Overwrite}
			var err error
			switch u.Op {
			case queue.OpEntries:
				te.Entries, err = rp.Create.Batch(u.Index)
				te.Keep = jr.c.otherRestores(jr.job.ID)
			case queue.OpMetadata:
				te.Entries, err = rp.Metadata.Batch(u.Index)
				te.Entries = without(te.Entries)
			case queue.OpLinks:
				te.Entries, err = rp.Links.Batch(u.Index)
				te.Entries = without(te.Entries)
			case queue.OpDirs:
				te.Entries, err = rp.Dirs.Batch(u.Index)
			}
			if err != nil {
				return err
			}
			item = te
		}
		return jr.sendWork(ctx, u.Op, t.Host, item, msgID)
	}
	steps := []struct {
		op string
		n  int
	}{
		{queue.OpEntries, rp.Create.Len()},
		{queue.OpExtents, len(rp.Extents)},
		{queue.OpMetadata, rp.Metadata.Len()},
		{queue.OpLinks, rp.Links.Len()},
		{queue.OpDirs, max(rp.Dirs.Len(), 1)}, // the last step also flushes (batch 0 of none is empty)
	}
	for _, step := range steps {
		if step.op == queue.OpMetadata {
			mu.Lock()
			err := failLinks(&rp.Links, failed)
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		if step.op == queue.OpDirs && len(failed) > 0 {
			// The files left out still have partial files: the abort
			// step removes them (every other file is in place by now),
			// before the directories get their times.
			if err := jr.phase(ctx, func(yield func(dispatch.Unit) bool) {
				for t := range targets {
					if !yield(dispatch.Unit{Op: queue.OpAbort, Target: t}) {
						return
					}
				}
			}, publish); err != nil {
				return err
			}
		}
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
	for _, p := range slices.Sorted(maps.Keys(failed)) {
		jr.warn(manifest.Display(p) + ": " + failed[p])
	}
	jr.rate()
	jr.job.Stats = manifest.Stats{
		// Files counts those restored: every one left out is a file or a
		// hard link to one.
		SourceBytes: rp.Bytes, Chunks: len(rp.Extents), Files: rp.Files - len(failed), Warnings: len(rp.Warnings) + len(failed),
		Seconds: time.Since(jr.job.Started).Seconds(),
	}
	jr.purge(ctx, true)
	return nil
}

// failLinks adds to failed the hard links among links to files in failed:
// their file is not restored, so neither are they.
func failLinks(links *plan.RestoreStep, failed map[string]string) error {
	if len(failed) == 0 {
		return nil
	}
	for i := range links.Len() {
		batch, err := links.Batch(i)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if why, ok := failed[e.LinkTo]; ok && failed[e.Path] == "" {
				failed[e.Path] = "not restored: hard link to " + manifest.Display(e.LinkTo) + ", which is " + why
			}
		}
	}
	return nil
}
