package plan

import "github.com/bulkbackup/bulkbackup/pkg/manifest"

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
	// ParentChunks are the chunks of the snapshot unchanged files reuse
	// content of (none without one): Reused's extents index into it. The
	// parent's entries are not kept.
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

// Files compares a scan with the parent snapshot (nil for none) and packs
// what must be read into chunks of at most chunkSize. A file is unchanged,
// and keeps its content in the parent without being read, when its size,
// mtime and inode equal the parent's, the parent read it whole, and none of
// its extents lies in a chunk of unusable (indexes into parent.Chunks: the
// chunks not stored whole).
func Files(entries []manifest.Entry, parent *manifest.Snapshot, unusable map[int]bool, chunkSize int64) *FilesPlan {
	fp := &FilesPlan{Entries: entries}
	inParent := func(string) *manifest.Entry { return nil }
	if parent != nil {
		fp.ParentChunks = parent.Chunks
		inParent = parentLookup(entries, parent.Files)
	}
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
			!inUnusable(p.Content, unusable):
			fp.Unchanged++
			fp.Reused = append(fp.Reused, i)
			e.Content = p.Content
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
// (nil if it has none), asked for the paths of scan in order. When both
// lists are in walk order, as a scan and the snapshots made of scans are,
// it walks the parent's alongside: a map of millions of paths would hold
// about as much as the entries themselves.
func parentLookup(scan, parent []manifest.Entry) func(path string) *manifest.Entry {
	inWalkOrder := func(entries []manifest.Entry) bool {
		for i := 1; i < len(entries); i++ {
			if manifest.WalkOrder(entries[i-1].Path, entries[i].Path) >= 0 {
				return false
			}
		}
		return true
	}
	if !inWalkOrder(scan) || !inWalkOrder(parent) {
		byPath := make(map[string]*manifest.Entry, len(parent))
		for i := range parent {
			byPath[parent[i].Path] = &parent[i]
		}
		return func(path string) *manifest.Entry { return byPath[path] }
	}
	next := 0
	return func(path string) *manifest.Entry {
		for next < len(parent) && manifest.WalkOrder(parent[next].Path, path) < 0 {
			next++
		}
		if next < len(parent) && parent[next].Path == path {
			return &parent[next]
		}
		return nil
	}
}

// inUnusable reports whether any of content's extents lies in a chunk of
// unusable.
func inUnusable(content []manifest.Extent, unusable map[int]bool) bool {
	for _, x := range content {
		if unusable[x.Chunk] {
			return true
		}
	}
	return false
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
		exts := files[i].Content // the parent's extents, shared with it: not changed in place
		out := make([]manifest.Extent, len(exts))
		for j, x := range exts {
			ci, ok := fromParent[x.Chunk]
			if !ok {
				ci = add(fp.ParentChunks[x.Chunk], false)
				fromParent[x.Chunk] = ci
			}
			out[j] = manifest.Extent{Chunk: ci, Offset: x.Offset, Length: x.Length}
		}
		files[i].Content = out
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
