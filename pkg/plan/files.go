package plan

import (
	"iter"

	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// Piece is Length bytes at Offset of the file Path (relative to the tree's
// root, in manifest form), with the size, mtime and inode the scan saw, so
// the reader that reads it notices a file that changed since. A pack's
// pieces are read end to end into one chunk.
type Piece struct {
	Path   string `json:"p"`
	Offset int64  `json:"o,omitempty"`
	Length int64  `json:"n"`
	Size   int64  `json:"s"`
	MTime  int64  `json:"m"`
	Inode  uint64 `json:"i,omitempty"`
}

// FilesPlan is how a scanned tree is backed up: which files are read, in
// which packs, and which keep their parent's content.
type FilesPlan struct {
	// Entries is the scan, in walk order.
	Entries []manifest.Entry
	// ParentChunks are the parent's chunks unchanged files keep content
	// in, each once: Reused's extents index into it. The parent's entries
	// are not kept.
	ParentChunks []manifest.Chunk
	// Read lists the entries whose content is read, in order; the packs'
	// Part.File index into it.
	Read []int
	// Packs are the chunks to read, each a pack of file pieces.
	Packs []Pack
	// Reused lists the unchanged files (entry indexes, in order). Until
	// Build, their Content is their content in the parent: extents naming
	// ParentChunks.
	Reused []int
	// NewFiles, Changed and Unchanged count the regular files (hard links
	// not included) by how they compare with the parent.
	NewFiles, Changed, Unchanged int
	// ReadBytes is what the packs hold.
	ReadBytes int64
}

// Files compares a scan with the parent snapshot's listing (nil for none)
// and packs what must be read into chunks of at most chunkSize. A file is
// unchanged, and keeps its content in the parent without being read, when
// its size, mtime and inode equal the parent's, the parent read it whole
// into extents that add up to its size, and none of them lies in a chunk
// of unusable (indexes into parent.Chunks(): the chunks not stored whole).
//
// The parent's listing is walked once alongside the scan, both in walk
// order, as scans and the snapshots made of them are: a parent's file out
// of that order is not found, and read again. A walk of the parent that
// stops early (parent.Err()) leaves the files after it to be read.
func Files(entries []manifest.Entry, parent *manifest.Listing, unusable map[int]bool, chunkSize int64) *FilesPlan {
	fp := &FilesPlan{Entries: entries}
	inParent := func(string) *manifest.TreeEntry { return nil }
	if parent != nil {
		next, stop := iter.Pull2(parent.All())
		defer stop()
		inParent = parentLookup(next)
	}
	missing := make(map[string]bool, len(unusable))
	if parent != nil {
		for i := range unusable {
			missing[parent.Chunks()[i].Hash] = true
		}
	}
	fromParent := make(map[manifest.TreeExtent]int) // a chunk of the parent's: its index in ParentChunks
	var sizes []int64
	for i := range entries {
		e := &entries[i]
		if e.Type != manifest.TypeFile || e.LinkTo != "" {
			continue
		}
		p := inParent(e.Path)
		switch {
		case p == nil || p.Type != manifest.TypeFile:
			fp.NewFiles++
		case p.Size == e.Size && p.MTime == e.MTime && p.Inode == e.Inode && !p.Unread && p.Warning == "" &&
			reusable(p, missing):
			fp.Unchanged++
			fp.Reused = append(fp.Reused, i)
			e.Content = make([]manifest.Extent, len(p.Content))
			for j, x := range p.Content {
				key := manifest.TreeExtent{Hash: x.Hash, StoredSize: x.StoredSize, Zero: x.Zero, ChunkLen: x.ChunkLen}
				ci, ok := fromParent[key]
				if !ok {
					ci = len(fp.ParentChunks)
					fromParent[key] = ci
					fp.ParentChunks = append(fp.ParentChunks, manifest.Chunk{Length: x.ChunkLen, Hash: x.Hash, StoredSize: x.StoredSize, Zero: x.Zero})
				}
				e.Content[j] = manifest.Extent{Chunk: ci, Offset: x.Offset, Length: x.Length}
			}
			continue
		default:
			fp.Changed++
		}
		if e.Size > 0 {
			fp.Read = append(fp.Read, i)
			sizes = append(sizes, e.Size)
			fp.ReadBytes += e.Size
		}
	}
	fp.Packs = Packs(sizes, chunkSize, 0)
	return fp
}

// parentLookup returns a function that finds the parent's entry of a path
// (nil if it has none), asked for paths in walk order: it walks the
// parent's listing (next) alongside.
func parentLookup(next func() (string, *manifest.TreeEntry, bool)) func(path string) *manifest.TreeEntry {
	p, e, ok := next()
	return func(path string) *manifest.TreeEntry {
		for ok && manifest.WalkOrder(p, path) < 0 {
			p, e, ok = next()
		}
		if ok && p == path {
			return e
		}
		return nil
	}
}

// reusable reports whether a parent's file's content can be named again:
// extents inside their chunks, adding up to the file's size, none in a
// chunk of missing (by hash). The parent's listing is not validated whole.
func reusable(p *manifest.TreeEntry, missing map[string]bool) bool {
	var n int64
	for _, x := range p.Content {
		if missing[x.Hash] || !manifest.InRange(x.Offset, x.Length, x.ChunkLen) || x.Zero != (x.Hash == "") ||
			x.ChunkLen <= 0 || x.ChunkLen > layout.MaxChunkSize || !x.Zero && x.StoredSize <= 0 {
			return false
		}
		if n += x.Length; n > p.Size {
			return false
		}
	}
	return n == p.Size
}

// Pieces returns the file pieces of pack i, as a reader reads them.
func (fp *FilesPlan) Pieces(i int) []Piece {
	pack := fp.Packs[i]
	out := make([]Piece, len(pack.Parts))
	for j, p := range pack.Parts {
		e := &fp.Entries[fp.Read[p.File]]
		out[j] = Piece{Path: e.Path, Offset: p.Offset, Length: p.Length, Size: e.Size, MTime: e.MTime, Inode: e.Inode}
	}
	return out
}

// Stored is what storing one pack gave: the chunk it became.
type Stored struct {
	Hash       string
	Length     int64
	StoredSize int64
	// Zero: every byte was zero; no object holds it.
	Zero bool
	// New: this backup stored it; it was not in the repository before.
	New bool
}

// Problem is what went wrong reading a file: it could not be read at all
// (Unread: it gets no content), or it changed while read (its content is as
// read); Warning says which.
type Problem struct {
	Unread  bool
	Warning string
}

// Build fills snap's chunks, files and stats from the stored packs (stored
// gives pack i's chunk) and the problems readers reported, by path. It
// leaves snap's version, ID, source and times to the caller. The
// snapshot's files are fp.Entries, completed in place: a large tree is
// not held twice.
func (fp *FilesPlan) Build(snap *manifest.Snapshot, stored func(pack int) Stored, problems map[string]Problem) {
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
	// Each file's content goes straight into its entry: the scan's
	// entries have none.
	files := fp.Entries
	for i, pack := range fp.Packs {
		d := stored(i)
		ci := add(manifest.Chunk{Length: d.Length, Hash: d.Hash, StoredSize: d.StoredSize, Zero: d.Zero}, d.New)
		for _, p := range pack.Parts {
			e := &files[fp.Read[p.File]]
			e.Content = append(e.Content, manifest.Extent{Chunk: ci, Offset: p.PackOffset, Length: p.Length})
		}
	}
	fromParent := make(map[int]int)
	for _, i := range fp.Reused { // in order, so that the chunks' order is the same each time
		for j, x := range files[i].Content {
			ci, ok := fromParent[x.Chunk]
			if !ok {
				ci = add(fp.ParentChunks[x.Chunk], false)
				fromParent[x.Chunk] = ci
			}
			files[i].Content[j].Chunk = ci
		}
	}
	// Hard links take their content from the file they name: index those.
	linked := make(map[string]int)
	for _, e := range files {
		if e.LinkTo != "" {
			linked[e.LinkTo] = -1
		}
	}
	for i := range files {
		e := &files[i]
		if _, ok := linked[e.Path]; ok {
			linked[e.Path] = i
		}
		if e.Type == manifest.TypeFile {
			st.Files++
			if p := problems[e.Path]; e.LinkTo == "" && p.Warning != "" {
				e.Warning, e.Unread = p.Warning, p.Unread
				if p.Unread {
					e.Content = nil
				}
			}
			if j := linked[e.LinkTo]; e.LinkTo != "" && j >= 0 {
				// A link names an earlier file (the scan's order), which
				// is complete here; one that does not fails validation.
				first := &files[j]
				e.Size, e.Content, e.Unread = first.Size, first.Content, first.Unread
			}
			if e.LinkTo == "" && !e.Unread {
				snap.Size += e.Size
			}
		}
		if e.Warning != "" {
			st.Warnings++
		}
	}
	snap.Files = files
	st.Chunks = len(snap.Chunks)
	st.SourceBytes = snap.Size
	st.ReadBytes = fp.ReadBytes
	st.NewFiles, st.ChangedFiles, st.UnchangedFiles = fp.NewFiles, fp.Changed, fp.Unchanged
}
