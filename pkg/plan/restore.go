package plan

import (
	"cmp"

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

// ChunkWrite is one chunk of a tree restore and where its bytes go.
type ChunkWrite struct {
	// Chunk indexes the snapshot's chunks.
	Chunk int
	Parts []Extent
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

// RestorePlan is the work of a tree restore, step by step (see
// restore.Tree): entries to create, chunks to write, files to finish, hard
// links to make, directories to finish. Entries carry no content.
type RestorePlan struct {
	Create, Metadata, Links, Dirs [][]manifest.Entry
	Extents                       []ChunkWrite
	// Bytes and Files are the content and the regular files restored.
	Bytes int64
	Files int
	// Warnings name the entries left out: never read at backup, or
	// special files.
	Warnings []string
}

// Restore lays out the restore of the selected entries of snap. whole says
// the whole tree is restored, so the root's own metadata applies to the
// target. Entries that cannot be restored (never read, special files) are
// left out with a warning; a hard link whose first name is not selected
// becomes a file of its own. Zero chunks are not written: the partial files
// are created at their size and read as zeros there.
func Restore(snap *manifest.Snapshot, selected []manifest.Entry, whole bool) *RestorePlan {
	rp := &RestorePlan{}
	// The batches are slices of these lists, not copies: a tree of
	// millions is held once per step that lists it, not twice.
	create := make([]manifest.Entry, 0, len(selected))
	var metadata, links, dirs []manifest.Entry
	primary := make(map[string]string) // a hard link group's first name in the snapshot -> in the selection
	byChunk := make(map[int]*ChunkWrite)
	var order []int
	for _, e := range selected {
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
				primary[group], e.LinkTo = e.Path, ""
				var at int64
				for _, x := range e.Content {
					if c := snap.Chunks[x.Chunk]; !c.Zero { // holes need no writing
						w := byChunk[x.Chunk]
						if w == nil {
							w = &ChunkWrite{Chunk: x.Chunk}
							byChunk[x.Chunk] = w
							order = append(order, x.Chunk)
						}
						w.Parts = append(w.Parts, Extent{Path: e.Path, FileOffset: at, ChunkOffset: x.Offset, Length: x.Length})
					}
					at += x.Length
				}
				rp.Bytes += e.Size
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
	rp.Create, rp.Metadata, rp.Links, rp.Dirs = batch(create), batch(metadata), batch(links), batch(dirs)
	for _, ci := range order {
		w := byChunk[ci]
		for len(w.Parts) > 0 {
			n := min(len(w.Parts), RestoreMaxParts)
			rp.Extents = append(rp.Extents, ChunkWrite{Chunk: ci, Parts: w.Parts[:n]})
			w.Parts = w.Parts[n:]
		}
	}
	return rp
}

// batch cuts entries into batches of bounded count and size: slices of
// entries, which they share.
func batch(entries []manifest.Entry) [][]manifest.Entry {
	var out [][]manifest.Entry
	start, size := 0, 0
	for i, e := range entries {
		n := 128 + len(e.Path) + len(e.Target) + len(e.LinkTo) + len(e.Warning)
		if i-start == RestoreBatchEntries || size+n > RestoreBatchBytes && i > start {
			out = append(out, entries[start:i:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(entries) {
		out = append(out, entries[start:len(entries):len(entries)])
	}
	return out
}
