package coordinator

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	err := jr.phase(ctx, single(unit{op: queue.OpScan}), func(ctx context.Context, _ unit, attempt int, msgID string) error {
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
	fp := planFiles(entries, parent.snap, parent.unusable, req.ChunkSize)
	// A resumed job has counted the packs it replayed as done.
	jr.job.Progress.ChunksTotal, jr.job.Progress.BytesTotal = len(fp.packs), fp.readBytes
	jr.logger.InfoContext(ctx, "tree scanned", "entries", len(entries), "new", fp.newFiles, "changed", fp.changed,
		"unchanged", fp.unchanged, "chunks", len(fp.packs), "read_bytes", fp.readBytes)
	if err := jr.c.saveJob(ctx, jr.job); err != nil {
		return nil, err
	}
	subject := queue.ReadSubject(req.Source.Host, jr.job.ID)
	err = jr.phase(ctx, indexes(queue.OpRead, len(fp.packs)), func(ctx context.Context, u unit, _ int, msgID string) error {
		pack := fp.packs[u.index]
		item := &queue.ReadItem{
			V: queue.MessageVersion, JobID: jr.job.ID, Path: req.Source.Path, Index: u.index,
			Length: pack.Length, Repo: req.Repo, Pieces: make([]queue.Piece, len(pack.Parts)),
		}
		for i, p := range pack.Parts {
			e := &fp.entries[fp.read[p.File]]
			item.Pieces[i] = queue.Piece{Path: e.Path, Offset: p.Offset, Length: p.Length, Size: e.Size, MTime: e.MTime, Inode: e.Inode}
		}
		_, err := jr.c.js.Publish(ctx, subject, queue.Encode(item), jetstream.WithMsgID(msgID))
		return err
	})
	if err != nil {
		return nil, err
	}
	problems := make(map[string]queue.FileProblem)
	for u, d := range jr.done {
		if u.op == queue.OpProblems {
			for _, p := range d.Problems {
				if old, ok := problems[p.Path]; !ok || p.Unread && !old.Unread {
					problems[p.Path] = p
				}
			}
		}
	}
	snap := &manifest.Snapshot{
		Version: manifest.VersionFor(manifest.ModeFiles), ID: jr.job.SnapshotID, JobID: jr.job.ID, Time: jr.job.Started,
		Host: req.Source.Host, Path: req.Source.Path, Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		ChunkSize: req.ChunkSize, Hash: "sha256", Compression: "zstd", Level: req.Level,
	}
	fp.build(snap, func(i int) *queue.Done { return jr.done[unit{op: queue.OpRead, index: i}] }, problems)
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
	final := jr.done[unit{op: queue.OpScan}]
	if final == nil {
		return nil, nil, errors.New("scan: no completion recorded")
	}
	var entries []manifest.Entry
	for i := range final.Batches {
		part := jr.done[unit{op: queue.OpScanPart, target: final.Attempt, index: i}]
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

func single(u unit) iter.Seq[unit] {
	return func(yield func(unit) bool) { yield(u) }
}

// indexes yields units 0..n-1 of op.
func indexes(op string, n int) iter.Seq[unit] {
	return func(yield func(unit) bool) {
		for i := range n {
			if !yield(unit{op: op, index: i}) {
				return
			}
		}
	}
}

// filesPlan is how a scanned tree is backed up: which files are read, in
// which packs, and which keep their parent's content.
type filesPlan struct {
	entries []manifest.Entry
	parent  *manifest.Snapshot
	// read lists the entries whose content is read, in order; the packs'
	// Part.File index into it.
	read  []int
	packs []plan.Pack
	// reused holds, for unchanged files, their content in the parent
	// (extents naming the parent's chunks).
	reused                       map[int][]manifest.Extent
	newFiles, changed, unchanged int
	readBytes                    int64
}

// unusable reports whether any of a file's extents lies in a chunk of
// unusable.
func unusable(content []manifest.Extent, unusable map[int]bool) bool {
	for _, x := range content {
		if unusable[x.Chunk] {
			return true
		}
	}
	return false
}

// planFiles compares a scan with the parent snapshot (nil for none) and
// packs what must be read into chunks of at most chunkSize. A file whose
// content in the parent lies in a chunk of unusableChunks (indexes into
// parent.Chunks) is read again, however unchanged it looks.
func planFiles(entries []manifest.Entry, parent *manifest.Snapshot, unusableChunks map[int]bool, chunkSize int64) *filesPlan {
	fp := &filesPlan{entries: entries, parent: parent, reused: make(map[int][]manifest.Extent)}
	before := make(map[string]*manifest.Entry)
	if parent != nil {
		for i := range parent.Files {
			before[parent.Files[i].Path] = &parent.Files[i]
		}
	}
	var sizes []int64
	for i, e := range entries {
		if e.Type != manifest.TypeFile || e.LinkTo != "" {
			continue
		}
		p := before[e.Path]
		switch {
		case p == nil || p.Type != manifest.TypeFile:
			fp.newFiles++
		case p.Size == e.Size && p.MTime == e.MTime && p.Inode == e.Inode && !p.Unread && p.Warning == "" &&
			!unusable(p.Content, unusableChunks):
			fp.unchanged++
			fp.reused[i] = p.Content
			continue
		default:
			fp.changed++
		}
		if e.Size > 0 {
			fp.read = append(fp.read, i)
			sizes = append(sizes, e.Size)
			fp.readBytes += e.Size
		}
	}
	fp.packs = plan.Packs(sizes, chunkSize, 0)
	return fp
}

// build fills snap's chunks, files and stats from the stored packs (result
// gives each pack's completion) and the problems readers reported by path.
func (fp *filesPlan) build(snap *manifest.Snapshot, result func(pack int) *queue.Done, problems map[string]queue.FileProblem) {
	st := &snap.Stats
	byHash := make(map[string]int)
	add := func(c manifest.Chunk, isNew bool) int {
		if !c.Zero {
			if i, ok := byHash[c.Hash]; ok {
				return i
			}
			byHash[c.Hash] = len(snap.Chunks)
			st.StoredBytes += c.StoredSize
			if isNew {
				st.NewChunks++
				st.NewBytes += c.StoredSize
			}
		} else {
			st.ZeroChunks++
		}
		snap.Chunks = append(snap.Chunks, c)
		return len(snap.Chunks) - 1
	}
	content := make(map[int][]manifest.Extent)
	for i, pack := range fp.packs {
		d := result(i)
		ci := add(manifest.Chunk{Length: d.Length, Hash: d.Hash, StoredSize: d.StoredSize, Zero: d.Zero}, d.New)
		for _, p := range pack.Parts {
			e := fp.read[p.File]
			content[e] = append(content[e], manifest.Extent{Chunk: ci, Offset: p.PackOffset, Length: p.Length})
		}
	}
	fromParent := make(map[int]int)
	for i := range fp.entries {
		exts, ok := fp.reused[i]
		if !ok {
			continue
		}
		out := make([]manifest.Extent, len(exts))
		for j, x := range exts {
			ci, ok := fromParent[x.Chunk]
			if !ok {
				ci = add(fp.parent.Chunks[x.Chunk], false)
				fromParent[x.Chunk] = ci
			}
			out[j] = manifest.Extent{Chunk: ci, Offset: x.Offset, Length: x.Length}
		}
		content[i] = out
	}
	snap.Files = make([]manifest.Entry, len(fp.entries))
	index := make(map[string]int, len(fp.entries))
	for i, e := range fp.entries {
		index[e.Path] = i
		if e.Type == manifest.TypeFile {
			st.Files++
			switch {
			case e.LinkTo != "":
				first := snap.Files[index[e.LinkTo]]
				e.Size, e.Content, e.Unread = first.Size, first.Content, first.Unread
			case problems[e.Path].Error != "":
				p := problems[e.Path]
				e.Warning, e.Unread = p.Error, p.Unread
				if !p.Unread {
					e.Content = content[i]
				}
			default:
				e.Content = content[i]
			}
			if e.LinkTo == "" && !e.Unread {
				snap.Size += e.Size
			}
		}
		if e.Warning != "" {
			st.Warnings++
		}
		snap.Files[i] = e
	}
	st.Chunks = len(snap.Chunks)
	st.SourceBytes = snap.Size
	st.ReadBytes = fp.readBytes
	st.NewFiles, st.ChangedFiles, st.UnchangedFiles = fp.newFiles, fp.changed, fp.unchanged
}

// Batches of a files-mode restore stay well inside a NATS message.
const (
	restoreBatchEntries = 512
	restoreBatchBytes   = 192 << 10
	restoreMaxParts     = plan.MaxPackParts
)

// restorePlan is the work of a files-mode restore.
type restorePlan struct {
	// Entries (without content) of each step, in batches.
	create, metadata, links, dirs [][]manifest.Entry
	// extents are the chunk writes.
	extents  []extentWrite
	bytes    int64
	files    int
	warnings []string
}

// extentWrite is one chunk and where its bytes go.
type extentWrite struct {
	chunk int
	parts []queue.TreePart
	bytes int64
}

// planRestore lays out the restore of the selected entries of snap. whole
// says the whole tree is restored, so the root's own metadata applies to the
// target. Entries that cannot be restored (never read, special files) are
// left out with a warning; a hard link whose first name is not selected
// becomes a file of its own.
func planRestore(snap *manifest.Snapshot, selected []manifest.Entry, whole bool) *restorePlan {
	rp := &restorePlan{}
	var create, metadata, links, dirs []manifest.Entry
	primary := make(map[string]string) // a hard link group's first name in the snapshot -> in the selection
	byChunk := make(map[int]*extentWrite)
	var order []int
	for _, e := range selected {
		switch {
		case e.Type == manifest.TypeSpecial:
			rp.warnings = append(rp.warnings, e.Path+": not restored: "+cmpOr(e.Warning, "special file"))
			continue
		case e.Type == manifest.TypeFile && e.Unread:
			rp.warnings = append(rp.warnings, e.Path+": not restored: it was not read at backup ("+e.Warning+")")
			continue
		}
		if e.Type == manifest.TypeFile {
			rp.files++
			group := cmpOr(e.LinkTo, e.Path)
			if first, ok := primary[group]; ok {
				e.LinkTo = first
			} else {
				primary[group], e.LinkTo = e.Path, ""
				var at int64
				for _, x := range e.Content {
					if c := snap.Chunks[x.Chunk]; !c.Zero { // holes need no writing
						w := byChunk[x.Chunk]
						if w == nil {
							w = &extentWrite{chunk: x.Chunk}
							byChunk[x.Chunk] = w
							order = append(order, x.Chunk)
						}
						w.parts = append(w.parts, queue.TreePart{Path: e.Path, FileOffset: at, ChunkOffset: x.Offset, Length: x.Length})
						w.bytes += x.Length
					}
					at += x.Length
				}
				rp.bytes += e.Size
			}
		}
		e.Content = nil
		create = append(create, e)
		switch {
		case e.Type == manifest.TypeDir && (e.Path != "." || whole):
			dirs = append(dirs, e)
		case e.Type == manifest.TypeFile && e.LinkTo != "":
			links = append(links, e)
		case e.Type != manifest.TypeDir:
			metadata = append(metadata, e)
		}
	}
	rp.create, rp.metadata, rp.links, rp.dirs = batch(create), batch(metadata), batch(links), batch(dirs)
	for _, ci := range order {
		w := byChunk[ci]
		for len(w.parts) > 0 {
			n := min(len(w.parts), restoreMaxParts)
			part := extentWrite{chunk: ci, parts: w.parts[:n]}
			for _, p := range part.parts {
				part.bytes += p.Length
			}
			rp.extents = append(rp.extents, part)
			w.parts = w.parts[n:]
		}
	}
	return rp
}

// batch cuts entries into batches of bounded count and size.
func batch(entries []manifest.Entry) [][]manifest.Entry {
	var out [][]manifest.Entry
	var cur []manifest.Entry
	size := 0
	for _, e := range entries {
		n := 128 + len(e.Path) + len(e.Target) + len(e.LinkTo) + len(e.Warning)
		if len(cur) == restoreBatchEntries || size+n > restoreBatchBytes && len(cur) > 0 {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// restoreFiles restores the selected part of a files-mode snapshot to every
// target, step by step (see restore.Tree).
func (jr *jobRun) restoreFiles(ctx context.Context, snap *manifest.Snapshot) error {
	req := jr.job.Restore
	selected, err := snap.Select(req.Paths)
	if err != nil {
		return err
	}
	rp := planRestore(snap, selected, len(req.Paths) == 0)
	targets := len(req.Targets)
	jr.job.Progress = queue.Progress{ChunksTotal: len(rp.extents) * targets, BytesTotal: rp.bytes * int64(targets)}
	jr.job.Warnings = nil
	for _, w := range rp.warnings {
		jr.warn(w)
	}
	if err := jr.start(ctx); err != nil {
		return err
	}
	publish := func(ctx context.Context, u unit, _ int, msgID string) error {
		t := req.Targets[u.target]
		item := &queue.WriteItem{
			V: queue.MessageVersion, JobID: jr.job.ID, Op: u.op, Target: u.target, Path: t.Path,
			Repo: req.Repo, Overwrite: req.Overwrite, Index: u.index, Tree: true,
		}
		if u.op == queue.WriteEntries {
			item.Keep = jr.c.otherRestores(jr.job.ID)
		}
		switch u.op {
		case queue.WriteEntries:
			item.Entries = rp.create[u.index]
		case queue.WriteMetadata:
			item.Entries = rp.metadata[u.index]
		case queue.WriteLinks:
			item.Entries = rp.links[u.index]
		case queue.WriteDirs:
			item.Entries = rp.dirs[u.index]
		case queue.WriteExtents:
			w := rp.extents[u.index]
			item.Hash, item.Length, item.Parts = snap.Chunks[w.chunk].Hash, snap.Chunks[w.chunk].Length, w.parts
		}
		_, err := jr.c.js.Publish(ctx, queue.WriteSubject(t.Host, jr.job.ID), queue.Encode(item), jetstream.WithMsgID(msgID))
		return err
	}
	steps := []struct {
		op string
		n  int
	}{
		{queue.WriteEntries, len(rp.create)},
		{queue.WriteExtents, len(rp.extents)},
		{queue.WriteMetadata, len(rp.metadata)},
		{queue.WriteLinks, len(rp.links)},
		{queue.WriteDirs, max(len(rp.dirs), 1)}, // the last step also flushes
	}
	if len(rp.dirs) == 0 {
		rp.dirs = [][]manifest.Entry{nil}
	}
	for _, step := range steps {
		units := func(yield func(unit) bool) {
			for i := range step.n {
				for t := range targets {
					if !yield(unit{op: step.op, target: t, index: i}) {
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
		SourceBytes: rp.bytes, Chunks: len(rp.extents), Files: rp.files, Warnings: len(rp.warnings),
		Seconds: time.Since(jr.job.Started).Seconds(),
	}
	jr.purge(ctx, true)
	return nil
}
