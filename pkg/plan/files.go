package plan

import (
	"iter"
	"slices"

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
	// Scan is the tree's scan, in walk order; entries are numbered by
	// their place in it.
	Scan *Scan
	// ParentChunks are the parent's chunks unchanged files keep content
	// in, each once. The parent's entries are not kept.
	ParentChunks []manifest.Chunk
	// Read lists the entries whose content is read, in order; the packs'
	// Part.File index into it.
	Read []int
	// Packs are the chunks to read, each a pack of file pieces.
	Packs []Pack
	// Reused lists the unchanged files, in order.
	Reused []int
	// reusedContent holds the content of each of Reused in the parent,
	// end to end, extents naming ParentChunks; reusedEnds where each
	// file's ends.
	reusedContent []manifest.Extent
	reusedEnds    []int
	// linkTargets are the files hard links name.
	linkTargets map[string]bool
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
// order (manifest.WalkOrder), as scans and the snapshots made of them are:
// a parent's file out of that order is not found, and read again. A walk of the parent that
// stops early (parent.Err()) leaves the files after it to be read.
func Files(scan *Scan, parent *manifest.Listing, unusable map[int]bool, chunkSize int64) (*FilesPlan, error) {
	fp := &FilesPlan{Scan: scan, linkTargets: make(map[string]bool)}
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
	err := scan.Each(func(i int, e *manifest.Entry) error {
		if e.Type != manifest.TypeFile {
			return nil
		}
		if e.LinkTo != "" {
			fp.linkTargets[e.LinkTo] = true
			return nil
		}
		p := inParent(e.Path)
		switch {
		case p == nil || p.Type != manifest.TypeFile:
			fp.NewFiles++
		case p.Size == e.Size && p.MTime == e.MTime && p.Inode == e.Inode && !p.Unread && p.Warning == "" &&
			reusable(p, missing):
			fp.Unchanged++
			fp.Reused = append(fp.Reused, i)
			for _, x := range p.Content {
				key := manifest.TreeExtent{Hash: x.Hash, StoredSize: x.StoredSize, Zero: x.Zero, ChunkLen: x.ChunkLen}
				ci, ok := fromParent[key]
				if !ok {
					ci = len(fp.ParentChunks)
					fromParent[key] = ci
					fp.ParentChunks = append(fp.ParentChunks, manifest.Chunk{Length: x.ChunkLen, Hash: x.Hash, StoredSize: x.StoredSize, Zero: x.Zero})
				}
				fp.reusedContent = append(fp.reusedContent, manifest.Extent{Chunk: ci, Offset: x.Offset, Length: x.Length})
			}
			fp.reusedEnds = append(fp.reusedEnds, len(fp.reusedContent))
			return nil
		default:
			fp.Changed++
		}
		if e.Size > 0 {
			fp.Read = append(fp.Read, i)
			sizes = append(sizes, e.Size)
			fp.ReadBytes += e.Size
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	fp.Packs = Packs(sizes, chunkSize, 0)
	return fp, nil
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
// what its entry says of it holds together (the listing is not validated
// whole: TreeEntry.Check) and none of its chunks is in missing (by hash).
func reusable(p *manifest.TreeEntry, missing map[string]bool) bool {
	for _, x := range p.Content {
		if missing[x.Hash] {
			return false
		}
	}
	return p.Check() == nil
}

// Pieces returns the file pieces of pack i, as a reader reads them. Safe
// for concurrent use.
func (fp *FilesPlan) Pieces(i int) ([]Piece, error) {
	pack := fp.Packs[i]
	out := make([]Piece, len(pack.Parts))
	for j, p := range pack.Parts {
		e, err := fp.Scan.Entry(fp.Read[p.File])
		if err != nil {
			return nil, err
		}
		out[j] = Piece{Path: e.Path, Offset: p.Offset, Length: p.Length, Size: e.Size, MTime: e.MTime, Inode: e.Inode}
	}
	return out, nil
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

// Build fills snap's chunks and stats from the stored packs (stored gives
// pack i's chunk) and the problems readers reported, by path, and calls
// emit with each of the snapshot's entries, in walk order, its content
// filled in: extents naming snap.Chunks. It leaves snap's files, version,
// ID, source and times to the caller, and stops at the first error emit
// returns.
func (fp *FilesPlan) Build(snap *manifest.Snapshot, stored func(pack int) Stored, problems map[string]Problem, emit func(e *manifest.Entry) error) error {
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
	packChunks := make([]int, len(fp.Packs))
	for i := range fp.Packs {
		d := stored(i)
		packChunks[i] = add(manifest.Chunk{Length: d.Length, Hash: d.Hash, StoredSize: d.StoredSize, Zero: d.Zero}, d.New)
	}
	fromParent := make(map[int]int) // in Reused order, so that the chunks' order is the same each time
	// Where each read file's parts lie: a file's whole-chunk packs can
	// come before the pack holding an earlier file's tail, so the packs'
	// parts are not in file order. partsOf[starts[k]:starts[k+1]] are
	// file k's, in order.
	type partAt struct{ pack, part int32 }
	starts := make([]int32, len(fp.Read)+1)
	for _, pk := range fp.Packs {
		for _, p := range pk.Parts {
			starts[p.File+1]++
		}
	}
	for k := range fp.Read {
		starts[k+1] += starts[k]
	}
	partsOf := make([]partAt, starts[len(fp.Read)])
	next := slices.Clone(starts[:len(fp.Read)])
	for pi, pk := range fp.Packs {
		for pj, p := range pk.Parts {
			partsOf[next[p.File]] = partAt{int32(pi), int32(pj)}
			next[p.File]++
		}
	}
	// Cursors: the next read file, the next reused file and its first
	// extent.
	var read, reused, extent int
	// linked holds the files hard links name, once complete.
	linked := make(map[string]manifest.Entry)
	err := fp.Scan.Each(func(i int, e *manifest.Entry) error {
		switch {
		case read < len(fp.Read) && fp.Read[read] == i:
			for _, at := range partsOf[starts[read]:starts[read+1]] {
				p := fp.Packs[at.pack].Parts[at.part]
				e.Content = append(e.Content, manifest.Extent{Chunk: packChunks[at.pack], Offset: p.PackOffset, Length: p.Length})
			}
			read++
		case reused < len(fp.Reused) && fp.Reused[reused] == i:
			e.Content = make([]manifest.Extent, fp.reusedEnds[reused]-extent)
			for j, x := range fp.reusedContent[extent:fp.reusedEnds[reused]] {
				ci, ok := fromParent[x.Chunk]
				if !ok {
					ci = add(fp.ParentChunks[x.Chunk], false)
					fromParent[x.Chunk] = ci
				}
				e.Content[j] = manifest.Extent{Chunk: ci, Offset: x.Offset, Length: x.Length}
			}
			extent = fp.reusedEnds[reused]
			reused++
		}
		if e.Type == manifest.TypeFile {
			st.Files++
			if p := problems[e.Path]; e.LinkTo == "" && p.Warning != "" {
				e.Warning, e.Unread = p.Warning, p.Unread
				if p.Unread {
					e.Content = nil
				}
			}
			if first, ok := linked[e.LinkTo]; e.LinkTo != "" && ok {
				// A link names an earlier file (the scan's order), which
				// is complete here; one that does not fails validation.
				e.Size, e.Content, e.Unread = first.Size, first.Content, first.Unread
			}
			if e.LinkTo == "" && !e.Unread {
				snap.Size += e.Size
			}
			if fp.linkTargets[e.Path] && e.LinkTo == "" {
				linked[e.Path] = *e
			}
		}
		if e.Warning != "" {
			st.Warnings++
		}
		return emit(e)
	})
	if err != nil {
		return err
	}
	st.Chunks = len(snap.Chunks)
	st.SourceBytes = snap.Size
	st.ReadBytes = fp.ReadBytes
	st.NewFiles, st.ChangedFiles, st.UnchangedFiles = fp.NewFiles, fp.Changed, fp.Unchanged
	return nil
}
