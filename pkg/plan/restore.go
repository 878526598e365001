package plan

import (
	"cmp"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// Extent says that Length bytes at ChunkOffset of a chunk belong at
// FileOffset of the file Path (relative to the restore target, in manifest
// form).
type Extent struct {
	Path        string `json:"p"`
	FileOffset  int64  `json:"fo,omitempty"`
	ChunkOffset int64  `json:"co,omitempty"`
	Length      int64  `json:"n"`
}

// ChunkWrite is one chunk of a tree restore and where its bytes go
// (RestorePlan.Parts).
type ChunkWrite struct {
	// Chunk indexes the plan's Chunks.
	Chunk int
	parts []restorePart
}

// restorePart is an Extent naming its file by its place in the plan's
// entries rather than by path.
type restorePart struct {
	entry                           int32
	fileOffset, chunkOffset, length int64
}

// Bounds of the batches of a tree restore, so that each work item stays
// well inside a NATS message.
const (
	// RestoreBatchEntries bounds the entries of one step's batch.
	RestoreBatchEntries = 512
	// RestoreBatchBytes bounds their estimated encoded size.
	RestoreBatchBytes = 192 << 10
	// RestoreMaxParts bounds the parts of one chunk write.
	RestoreMaxParts = MaxPackParts
)

// restoreScanBatch is how many of a restore's entries are packed together.
const restoreScanBatch = 1024

// RestorePlan is the work of a tree restore, step by step (see
// restore.Tree): entries to create, chunks to write, files to finish, hard
// links to make, directories to finish. The entries are held packed (a
// Scan) and carry no content; each step names those it handles.
type RestorePlan struct {
	Create, Metadata, Links, Dirs RestoreStep
	Extents                       []ChunkWrite
	// Chunks are the chunks the extents read, each once.
	Chunks []manifest.Chunk
	// Bytes and Files are the content and the regular files restored.
	Bytes int64
	Files int
	// Warnings name the entries left out: never read at backup, or
	// special files.
	Warnings []string

	entries *Scan
}

// RestoreStep is the entries one step of a tree restore handles, in
// batches of bounded count and size.
type RestoreStep struct {
	entries *Scan
	indexes []int32 // into entries, in order
	cuts    []int   // each batch's end in indexes
	size    int     // the estimated size of the batch being filled
}

// Len returns how many batches the step has.
func (s *RestoreStep) Len() int { return len(s.cuts) }

// Batch returns batch i's entries (none for batch 0 of a step without
// any). Safe for concurrent use.
func (s *RestoreStep) Batch(i int) ([]manifest.Entry, error) {
	if i == 0 && len(s.cuts) == 0 {
		return nil, nil
	}
	if i < 0 || i >= len(s.cuts) {
		return nil, fmt.Errorf("restore: batch %d of %d", i, len(s.cuts))
	}
	lo := 0
	if i > 0 {
		lo = s.cuts[i-1]
	}
	out := make([]manifest.Entry, 0, s.cuts[i]-lo)
	for _, j := range s.indexes[lo:s.cuts[i]] {
		e, err := s.entries.Entry(int(j))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// add appends entry i, e, cutting a batch when it would grow too large.
func (s *RestoreStep) add(i int, e *manifest.Entry) {
	n := 128 + len(e.Path) + len(e.Target) + len(e.LinkTo) + len(e.Warning)
	start := 0
	if len(s.cuts) > 0 {
		start = s.cuts[len(s.cuts)-1]
	}
	if count := len(s.indexes) - start; count == RestoreBatchEntries || s.size+n > RestoreBatchBytes && count > 0 {
		s.cuts = append(s.cuts, len(s.indexes))
		s.size = 0
	}
	s.indexes = append(s.indexes, int32(i))
	s.size += n
}

// finish ends the last batch.
func (s *RestoreStep) finish() {
	start := 0
	if len(s.cuts) > 0 {
		start = s.cuts[len(s.cuts)-1]
	}
	if start < len(s.indexes) {
		s.cuts = append(s.cuts, len(s.indexes))
	}
}

// Parts returns where the bytes of chunk write w go. Safe for concurrent
// use.
func (rp *RestorePlan) Parts(w int) ([]Extent, error) {
	parts := rp.Extents[w].parts
	out := make([]Extent, len(parts))
	for i, p := range parts {
		e, err := rp.entries.Entry(int(p.entry))
		if err != nil {
			return nil, err
		}
		out[i] = Extent{Path: e.Path, FileOffset: p.fileOffset, ChunkOffset: p.chunkOffset, Length: p.length}
	}
	return out, nil
}

// Restore lays out the restore of the entries of a snapshot's listing at
// or under paths (manifest form; the whole tree for none, in which case
// the root's own metadata applies to the target), with the directories
// that lead to them. It walks the listing once and holds what it keeps
// packed. Entries that cannot be restored (never read, special files) are
// left out with a warning; a hard link whose first name is not selected
// becomes a file of its own. Zero chunks are not written: the partial files
// are created at their size and read as zeros there. A path that names no
// entry, or an entry that is not valid, fails it.
func Restore(snap *manifest.Snapshot, listing *manifest.Listing, paths []string) (*RestorePlan, error) {
	want := make(map[string]bool)
	leading := make(map[string]bool) // the directories that lead to a wanted path
	for _, p := range paths {
		if err := manifest.CheckPath(p); err != nil {
			return nil, err
		}
		want[p] = true
		for a := p; a != "."; {
			a = manifest.Parent(a)
			leading[a] = true
		}
	}
	whole := len(paths) == 0
	under := func(p string) (string, bool) {
		for q := p; ; q = manifest.Parent(q) {
			if want[q] {
				return q, true
			}
			if q == "." {
				return "", false
			}
		}
	}
	found := make(map[string]bool)

	rp := &RestorePlan{entries: &Scan{}}
	for _, s := range []*RestoreStep{&rp.Create, &rp.Metadata, &rp.Links, &rp.Dirs} {
		s.entries = rp.entries
	}
	var pending []manifest.Entry // entries not yet packed
	n := 0                       // entries kept
	chunks := make(map[manifest.TreeExtent]int)
	byChunk := make(map[int][]restorePart)
	var order []int
	// primary maps a hard link group (the path its links name) to its
	// first name restored; files with one link are in no group.
	primary := make(map[string]string)
	for p, te := range listing.All() {
		if !whole {
			if q, ok := under(p); ok {
				found[q] = true
			} else if !leading[p] {
				continue
			}
		}
		if err := te.Check(); err != nil {
			return nil, fmt.Errorf("%w: snapshot %s: entry %q: %v", manifest.ErrInvalid, snap.ID, p, err)
		}
		e := te.Entry(p)
		switch {
		case e.Type == manifest.TypeSpecial:
			rp.Warnings = append(rp.Warnings, manifest.Display(e.Path)+": not restored: "+cmp.Or(e.Warning, "special file"))
			continue
		case e.Type == manifest.TypeFile && e.Unread:
			rp.Warnings = append(rp.Warnings, manifest.Display(e.Path)+": not restored: it was not read at backup ("+e.Warning+")")
			continue
		}
		if e.Type == manifest.TypeFile {
			rp.Files++
			group := cmp.Or(e.LinkTo, e.Path)
			if first, ok := primary[group]; ok {
				e.LinkTo = first
			} else {
				if e.LinkTo != "" || e.Links > 1 {
					primary[group] = e.Path
				}
				e.LinkTo = ""
				var at int64
				for _, x := range te.Content {
					if !x.Zero { // holes need no writing
						key := manifest.TreeExtent{Hash: x.Hash, StoredSize: x.StoredSize, ChunkLen: x.ChunkLen}
						ci, ok := chunks[key]
						if !ok {
							ci = len(rp.Chunks)
							chunks[key] = ci
							rp.Chunks = append(rp.Chunks, manifest.Chunk{Length: x.ChunkLen, Hash: x.Hash, StoredSize: x.StoredSize})
							order = append(order, ci)
						}
						byChunk[ci] = append(byChunk[ci], restorePart{entry: int32(n), fileOffset: at, chunkOffset: x.Offset, length: x.Length})
					}
					at += x.Length
				}
				rp.Bytes += e.Size
			}
		}
		rp.Create.add(n, &e)
		switch {
		case e.Type == manifest.TypeDir && (e.Path != "." || whole):
			rp.Dirs.add(n, &e)
		case e.Type == manifest.TypeFile && e.LinkTo != "":
			rp.Links.add(n, &e)
		case e.Type != manifest.TypeDir:
			rp.Metadata.add(n, &e)
		}
		pending = append(pending, e)
		n++
		if len(pending) == restoreScanBatch {
			if err := rp.entries.Add(pending); err != nil {
				return nil, err
			}
			pending = pending[:0]
		}
	}
	if err := listing.Err(); err != nil {
		return nil, err
	}
	if err := rp.entries.Add(pending); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if !found[p] {
			return nil, snap.PathNotFound(p, func(rel string) bool {
				for q := range listing.All() {
					if q == rel {
						return true
					}
				}
				return false
			})
		}
	}
	for _, s := range []*RestoreStep{&rp.Create, &rp.Metadata, &rp.Links, &rp.Dirs} {
		s.finish()
	}
	for _, ci := range order {
		parts := byChunk[ci]
		for len(parts) > 0 {
			k := min(len(parts), RestoreMaxParts)
			rp.Extents = append(rp.Extents, ChunkWrite{Chunk: ci, parts: parts[:k:k]})
			parts = parts[k:]
		}
	}
	return rp, nil
}
