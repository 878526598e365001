package manifest

import (
	"fmt"
	"iter"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/internal/zpack"
)

// A Listing is a snapshot's entries to be walked in walk order, as a
// backup walks its parent's alongside its scan. Assembled whole, a tree
// takes about 230 bytes an entry in memory; a Listing of a snapshot in
// stored tree form holds its directory objects compressed (about 20 bytes
// an entry) and decodes each only while the walk is inside it.
//
// A walk checks each entry's name, that no directory lists a name twice,
// and what a directory may hold as it goes, and stops at the first that
// is wrong (Err says why); it does not validate the snapshot: what a
// caller takes from an entry, it checks (TreeEntry.Check).
type Listing struct {
	id      string
	root    TreeEntry
	objects map[string][]byte // each directory object's bytes, compressed
	chunks  []Chunk
	whole   *Snapshot // a snapshot held whole (stored flat, or assembled)
	err     error
}

// LoadListing reads the directory objects of s, a snapshot in stored tree
// form, with load (as Assemble's), and returns them as a Listing. What
// they may hold together is bounded as for Assemble.
func (s *Snapshot) LoadListing(load func(refs []TreeRef) ([][]byte, error)) (*Listing, error) {
	if !s.Stored() || s.Version < VersionTrees || s.Root.Type != TypeDir || s.Root.Name != "" {
		return nil, fmt.Errorf("%w: snapshot %s: not a tree of directory objects", ErrInvalid, s.ID)
	}
	l := &Listing{id: s.ID, root: *s.Root, objects: make(map[string][]byte)}
	chunks := make(map[chunkKey]bool)
	_, err := s.readObjects(load, func(ref TreeRef, raw []byte, entries []TreeEntry) {
		l.objects[ref.ID] = zpack.Pack(raw)
		EachEntry(entries, func(e *TreeEntry) {
			for _, x := range e.Content {
				key := chunkKey{hash: x.Hash}
				if x.Zero {
					key = chunkKey{zeroes: x.ChunkLen}
				}
				if !chunks[key] {
					chunks[key] = true
					l.chunks = append(l.chunks, Chunk{Length: x.ChunkLen, Hash: x.Hash, StoredSize: x.StoredSize, Zero: x.Zero})
				}
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// WholeListing returns the Listing of a snapshot held whole: a files-mode
// snapshot stored flat (manifest versions 2 and 3), or one assembled.
func (s *Snapshot) WholeListing() *Listing {
	return &Listing{id: s.ID, whole: s, chunks: s.Chunks}
}

// Chunks returns the chunks the listing's extents name, each once (in
// no particular order for a stored tree).
func (l *Listing) Chunks() []Chunk { return l.chunks }

// Err returns what stopped the last walk early, if anything did other
// than its caller.
func (l *Listing) Err() error { return l.err }

// All yields each entry with its path, in the order stored (walk order,
// for the snapshots of scans). An entry's Inline and ID name what a
// directory holds, which follows it. The entry is valid until the next.
func (l *Listing) All() iter.Seq2[string, *TreeEntry] {
	return func(yield func(string, *TreeEntry) bool) {
		l.err = nil
		if l.whole != nil {
			for _, e := range l.whole.Files {
				t := l.whole.treeEntry(e, e.Path[strings.LastIndexByte(e.Path, '/')+1:])
				if !yield(e.Path, &t) {
					return
				}
			}
			return
		}
		w := listingWalk{l: l, yield: yield}
		root := l.root
		w.entry(&root, ".", 0)
	}
}

// listingWalk is one walk of a stored tree's listing.
type listingWalk struct {
	l     *Listing
	yield func(string, *TreeEntry) bool
	// n counts the entries yielded: a hostile repository can name one
	// object from many places, or an object from within itself.
	n int
}

// entry yields e, at path p, and what it holds; it reports whether to go
// on.
func (w *listingWalk) entry(e *TreeEntry, p string, depth int) bool {
	bad := func(format string, args ...any) bool {
		w.l.err = fmt.Errorf("%w: snapshot %s: %s", ErrInvalid, w.l.id, fmt.Sprintf(format, args...))
		return false
	}
	switch {
	case w.n >= MaxTreeEntries:
		return bad("more than %d entries", MaxTreeEntries)
	case depth > MaxTreeDepth:
		return bad("directories nested more than %d deep", MaxTreeDepth)
	case (e.ID != "" || e.Inline != nil) && e.Type != TypeDir:
		return bad("entry %q: a %s names a directory object", p, e.Type)
	}
	w.n++
	if !w.yield(p, e) {
		return false
	}
	children := e.Inline
	if e.ID != "" {
		packed, ok := w.l.objects[e.ID]
		if !ok {
			return bad("entry %q: directory object %s was not read", p, e.ID)
		}
		raw, err := zpack.Unpack(packed, MaxSize)
		if err != nil {
			return bad("directory object %s: %v", e.ID, err)
		}
		if children, err = decodeTree(raw, nil); err != nil {
			return bad("directory object %s: %v", e.ID, err)
		}
	}
	var seen map[string]bool // the names so far, once one came out of order
	for i := range children {
		c := &children[i]
		if c.Name == "" || c.Name == "." || c.Name == ".." || strings.ContainsRune(c.Name, '/') {
			return bad("%q holds an entry named %q", p, c.Name)
		}
		if seen == nil && i > 0 && c.Name <= children[i-1].Name {
			seen = make(map[string]bool, len(children))
			for _, d := range children[:i] {
				seen[d.Name] = true
			}
		}
		if seen != nil {
			if seen[c.Name] {
				return bad("%q lists %q twice", p, c.Name)
			}
			seen[c.Name] = true
		}
		child := c.Name
		if p != "." {
			child = p + "/" + c.Name
		}
		if !w.entry(c, child, depth+1) {
			return false
		}
	}
	return true
}
