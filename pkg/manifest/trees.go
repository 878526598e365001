package manifest

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
)

// A files-mode snapshot of version 4 or later is stored as a tree of
// directory objects (docs/format.md section 5.4.1): one per directory that
// holds anything, listing what it holds, each named by its content (the
// repository's chunk ID of its bytes, EncodeTree) and kept like a chunk. A directory
// names its subdirectories' objects, so a directory whose listing and
// subtree did not change is the same object in the next snapshot and costs
// nothing; the manifest itself holds the root directory and the header.
//
// In memory a snapshot is always whole (Files and Chunks filled): SplitTrees
// turns one into the stored form, Assemble turns the stored form back.

// VersionTrees is the manifest version of files-mode snapshots stored as
// directory objects.
const VersionTrees = 4

// TreeRef names a stored directory object: its chunk ID and the size of
// its stored object, as Chunk.StoredSize does for a chunk.
type TreeRef struct {
	ID         string `json:"tree,omitempty"`
	StoredSize int64  `json:"tree_size,omitempty"`
}

// TreeEntry is one entry of a directory object: an Entry named by its last
// path element, its extents naming their chunks themselves, and, for a
// directory that holds anything, its own directory object. The manifest's
// Root is the entry of the backed-up directory itself, with an empty name,
// in JSON; directory objects store entries in binary (EncodeTree).
type TreeEntry struct {
	Name    string       `json:"name"`
	Type    string       `json:"type"`
	Mode    uint32       `json:"mode"`
	UID     int          `json:"uid"`
	GID     int          `json:"gid"`
	MTime   int64        `json:"mtime"`
	Size    int64        `json:"size,omitempty"`
	Inode   uint64       `json:"inode,omitempty"`
	Links   uint64       `json:"nlink,omitempty"`
	Target  string       `json:"target,omitempty"`
	Special string       `json:"special,omitempty"`
	LinkTo  string       `json:"link_to,omitempty"`
	Content []TreeExtent `json:"content,omitempty"`
	Warning string       `json:"warning,omitempty"`
	Unread  bool         `json:"unread,omitempty"`
	TreeRef
	// Inline lists what a small directory holds, inside its parent's
	// listing instead of an object of its own (never the root's).
	Inline []TreeEntry `json:"-"`
	// inlineBody is Inline already encoded, while SplitTrees works.
	inlineBody []byte
}

// EachEntry calls f with each entry of entries and, for a directory listed
// inline, of its listing, in walk order.
func EachEntry(entries []TreeEntry, f func(e *TreeEntry)) {
	for i := range entries {
		f(&entries[i])
		if entries[i].Inline != nil {
			EachEntry(entries[i].Inline, f)
		}
	}
}

// TreeOptions say which directories SplitTreesWith lists inside their
// parents' objects rather than in objects of their own.
type TreeOptions struct {
	// InlineMax: a subdirectory whose listing (its own inline ones
	// included) takes at most this many bytes is listed in its parent's;
	// 0 gives every directory that holds anything an object of its own.
	InlineMax int
	// InlinePerObject bounds the bytes of the listings inlined into one
	// directory's, so that a change deep down rewrites little.
	InlinePerObject int
}

// DefaultTreeOptions are SplitTrees': a tree of many small directories is
// stored in objects of up to about 64 KiB, not one object per directory
// (each object costs a request, and on a directory repository two fsyncs).
var DefaultTreeOptions = TreeOptions{InlineMax: 4 << 10, InlinePerObject: 64 << 10}

// TreeExtent is an Extent that names its chunk: its hash and stored size
// (or Zero), and the chunk's length.
type TreeExtent struct {
	Hash       string `json:"h,omitempty"`
	StoredSize int64  `json:"s,omitempty"`
	Zero       bool   `json:"z,omitempty"`
	ChunkLen   int64  `json:"l"`
	Offset     int64  `json:"o"`
	Length     int64  `json:"n"`
}

// Bounds on what assembling a stored tree may cost, however hostile the
// repository: the entries it expands to (a directory object named from
// many places counts each time), the bytes of the distinct objects read,
// and the depth of directories.
const (
	MaxTreeEntries = 8 << 20
	MaxTreeDepth   = 1 << 16
)

// ErrNotPreorder is returned by SplitTrees for a snapshot whose entries are
// not in walk order (each directory followed by what it holds, before
// anything else): it is stored flat instead.
var ErrNotPreorder = errors.New("manifest: entries not in walk order")

// Stored reports whether s is in its stored tree form: a version 4
// files-mode manifest whose files are still in directory objects.
func (s *Snapshot) Stored() bool { return s.Root != nil && len(s.Files) == 0 }

// SplitTrees returns the stored form of the whole, valid files-mode
// snapshot s: a copy with Root set and no Files or Chunks. It calls put
// with the bytes of each directory object (EncodeTree), a directory's subdirectories'
// before its own, and put returns how the object is named and stored
// (identical directories may be put more than once). It fails with
// ErrNotPreorder when the entries are not in walk order, and with
// ErrTooLarge when the objects' bytes add up to more than MaxSize.
func (s *Snapshot) SplitTrees(put func(raw []byte) (TreeRef, error)) (*Snapshot, error) {
	return s.SplitTreesWith(DefaultTreeOptions, put)
}

// SplitTreesWith is SplitTrees with the given options.
func (s *Snapshot) SplitTreesWith(opts TreeOptions, put func(raw []byte) (TreeRef, error)) (*Snapshot, error) {
	if s.Mode != ModeFiles || len(s.Files) == 0 || s.Files[0].Path != "." {
		return nil, fmt.Errorf("%w: snapshot %s: not a files-mode snapshot", ErrInvalid, s.ID)
	}
	w := NewTreeWriter(s.ID, opts, put)
	for _, e := range s.Files {
		if err := w.add(e.Path, s.ToTreeEntry(e)); err != nil {
			return nil, err
		}
	}
	root, err := w.Close()
	if err != nil {
		return nil, err
	}
	out := *s
	out.Version, out.Files, out.Chunks, out.Trees, out.Root = VersionTrees, nil, nil, nil, &root
	return &out, nil
}

// A TreeWriter stores a files-mode snapshot's entries as directory
// objects as they come, in walk order: each directory's listing is put
// once the walk has left it (SplitTrees' form), so a tree is never held
// whole. It checks each entry as Validate would, but for hard links: a
// link must name an earlier file that has more than one link, and the
// writer remembers only those.
type TreeWriter struct {
	id   string
	opts TreeOptions
	put  func(raw []byte) (TreeRef, error)
	// stack holds the directories being listed, the root at the bottom.
	stack []*openDir
	root  TreeEntry
	last  string // the path added last
	total int    // the bytes of the objects put
	// linkable are the files added so far that a hard link may name
	// (more than one link), with their sizes.
	linkable map[string]int64
	size     int64 // what the files hold
	closed   bool
}

// openDir is a directory whose entries are still being listed; it is
// entries[index] of the directory below it on the stack. inlined counts
// the bytes of the listings inlined into it, height how deep they nest.
type openDir struct {
	path            string
	index           int
	entries         []TreeEntry
	inlined, height int
	// names holds the names of entries, once one came out of order:
	// until then each is known to differ from all before it.
	names map[string]bool
}

// unique reports whether name differs from the names of d's entries.
func (d *openDir) unique(name string) bool {
	if d.names == nil {
		if len(d.entries) == 0 || name > d.entries[len(d.entries)-1].Name {
			return true
		}
		d.names = make(map[string]bool, len(d.entries)+1)
		for _, e := range d.entries {
			d.names[e.Name] = true
		}
	}
	if d.names[name] {
		return false
	}
	d.names[name] = true
	return true
}

// NewTreeWriter returns a writer of snapshot id's entries, which calls put
// with the bytes of each directory object (EncodeTree), a directory's
// subdirectories' before its own; put returns how the object is named and
// stored (identical directories may be put more than once).
func NewTreeWriter(id string, opts TreeOptions, put func(raw []byte) (TreeRef, error)) *TreeWriter {
	return &TreeWriter{id: id, opts: opts, put: put, linkable: make(map[string]int64)}
}

// Add adds the entry at path p (manifest form), its extents naming their
// chunks; entries come each directory followed by what it holds, "."
// first. It fails with an error
// wrapping ErrInvalid for an entry Validate would refuse, and with
// ErrTooLarge when the objects add up to more than MaxSize.
func (w *TreeWriter) Add(p string, e TreeEntry) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot %s: entry %q: %s", ErrInvalid, w.id, p, fmt.Sprintf(format, args...))
	}
	if err := CheckPath(p); err != nil {
		return bad("%v", err)
	}
	if err := e.Check(); err != nil {
		return bad("%v", err)
	}
	if e.Type == TypeFile {
		if err := w.checkFile(e); err != nil {
			return bad("%v", err)
		}
	}
	return w.add(p, e)
}

// Check checks what an entry says of itself as Validate does: its mode,
// and content that only a regular file has, inside its chunks and adding
// up to the file's size unless it was not read. Where it lies, and what a
// hard link names, it cannot check.
func (e *TreeEntry) Check() error {
	if e.Mode > 0o7777 {
		return fmt.Errorf("mode %o has more than permission bits", e.Mode)
	}
	switch e.Type {
	case TypeDir, TypeSpecial, TypeSymlink:
		if len(e.Content) > 0 || e.Size != 0 || e.LinkTo != "" || e.Unread {
			return fmt.Errorf("a %s has no content", e.Type)
		}
		if e.Type == TypeSymlink {
			return checkTarget(e.Target)
		}
		if e.Target != "" {
			return fmt.Errorf("a %s has no link target", e.Type)
		}
		return nil
	case TypeFile:
	default:
		return fmt.Errorf("unknown type %q", e.Type)
	}
	switch {
	case e.Target != "":
		return fmt.Errorf("a file has no link target")
	case e.Size < 0:
		return fmt.Errorf("negative size %d", e.Size)
	case e.Unread && len(e.Content) > 0:
		return fmt.Errorf("unread, yet with content")
	}
	var sum int64
	for _, x := range e.Content {
		switch {
		case x.ChunkLen <= 0 || x.ChunkLen > layout.MaxChunkSize:
			return fmt.Errorf("a chunk of %d bytes", x.ChunkLen)
		case !InRange(x.Offset, x.Length, x.ChunkLen) || x.Length == 0:
			return fmt.Errorf("extent [%d,+%d) outside its chunk of %d bytes", x.Offset, x.Length, x.ChunkLen)
		case x.Zero && (x.Hash != "" || x.StoredSize != 0), !x.Zero && x.StoredSize <= 0:
			return fmt.Errorf("extent of chunk %q of stored size %d", x.Hash, x.StoredSize)
		case sum > e.Size-x.Length:
			return fmt.Errorf("extents hold more than the file's %d bytes", e.Size)
		}
		sum += x.Length
	}
	if !e.Unread && sum != e.Size {
		return fmt.Errorf("extents hold %d bytes, the file %d", sum, e.Size)
	}
	return nil
}

// checkFile checks what a regular file's entry names (Check has checked
// the rest): a hard link an earlier file with other links, of its size;
// and counts what the files hold.
func (w *TreeWriter) checkFile(e TreeEntry) error {
	size, linkable := w.linkable[e.LinkTo]
	switch {
	case e.LinkTo != "" && !linkable:
		return fmt.Errorf("hard link to %q, which is not an earlier regular file with other links", e.LinkTo)
	case e.LinkTo != "" && e.Size != size && !e.Unread:
		return fmt.Errorf("hard link of %d bytes to %q of %d", e.Size, e.LinkTo, size)
	}
	if e.LinkTo == "" && !e.Unread {
		if e.Size > math.MaxInt64-w.size {
			return fmt.Errorf("the files hold more than %d bytes", int64(math.MaxInt64))
		}
		w.size += e.Size
	}
	return nil
}

// add adds an entry SplitTrees takes from a valid snapshot, checking only
// its place.
func (w *TreeWriter) add(p string, e TreeEntry) error {
	if w.closed {
		return fmt.Errorf("manifest: snapshot %s: entry %q added to a closed tree", w.id, p)
	}
	if p == "." {
		if w.last != "" || e.Type != TypeDir {
			return fmt.Errorf("%w: snapshot %s: \".\" must come first, a directory", ErrInvalid, w.id)
		}
		e.Name = ""
		w.root, w.last, w.stack = e, ".", []*openDir{{path: "."}}
		return nil
	}
	if w.last == "" {
		return fmt.Errorf("%w: snapshot %s: the first entry must be the directory \".\"", ErrInvalid, w.id)
	}
	parent := Parent(p)
	for len(w.stack) > 0 && w.stack[len(w.stack)-1].path != parent {
		if err := w.pop(); err != nil {
			return err
		}
	}
	if len(w.stack) == 0 {
		return fmt.Errorf("%w: %q", ErrNotPreorder, p)
	}
	w.last = p
	e.Name = p[strings.LastIndexByte(p, '/')+1:]
	top := w.stack[len(w.stack)-1]
	if !top.unique(e.Name) {
		return fmt.Errorf("%w: snapshot %s: entry %q listed twice", ErrInvalid, w.id, p)
	}
	if e.Type == TypeFile && e.LinkTo == "" && e.Links > 1 {
		w.linkable[p] = e.Size
	}
	top.entries = append(top.entries, e)
	if e.Type == TypeDir {
		w.stack = append(w.stack, &openDir{path: p, index: len(top.entries) - 1})
	}
	return nil
}

// Close lists the directories still open and returns the root's entry,
// naming its directory object, and what the files hold (Snapshot.Size).
func (w *TreeWriter) Close() (TreeEntry, error) {
	if w.last == "" {
		return TreeEntry{}, fmt.Errorf("%w: snapshot %s: no entries", ErrInvalid, w.id)
	}
	for len(w.stack) > 0 {
		if err := w.pop(); err != nil {
			return TreeEntry{}, err
		}
	}
	w.closed = true
	return w.root, nil
}

// Size returns what the files added hold, those not read excepted, hard
// links counted once (Snapshot.Size).
func (w *TreeWriter) Size() int64 { return w.size }

// pop lists the directory on top of the stack, if it holds anything,
// inside its parent's listing when it is small, else in an object of its
// own named in its entry.
func (w *TreeWriter) pop() error {
	d := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	if len(d.entries) == 0 {
		return nil
	}
	body, err := appendEntries(nil, d.entries, 0)
	if err != nil {
		return err
	}
	if len(w.stack) > 0 {
		p := w.stack[len(w.stack)-1]
		if len(body) <= w.opts.InlineMax && p.inlined+len(body) <= w.opts.InlinePerObject && d.height < MaxInlineDepth {
			p.entries[d.index].inlineBody = body
			p.inlined += len(body)
			p.height = max(p.height, d.height+1)
			return nil
		}
	}
	raw := append(append(make([]byte, 0, len(treeMagic)+len(body)), treeMagic...), body...)
	if w.total += len(raw); w.total > MaxSize {
		return fmt.Errorf("%w: snapshot %s: its directory objects hold more than %d bytes", ErrTooLarge, w.id, MaxSize)
	}
	ref, err := w.put(raw)
	if err != nil {
		return err
	}
	if len(w.stack) == 0 {
		w.root.TreeRef = ref
	} else {
		w.stack[len(w.stack)-1].entries[d.index].TreeRef = ref
	}
	return nil
}

// ToTreeEntry returns e, an entry of s, as a directory object's entry
// (without its name), its extents naming s's chunks.
func (s *Snapshot) ToTreeEntry(e Entry) TreeEntry {
	return s.treeEntry(e, "")
}

// headOf returns e as a directory object's entry named name, without its
// content.
func headOf(e Entry, name string) TreeEntry {
	return TreeEntry{
		Name: name, Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID, MTime: e.MTime, Size: e.Size,
		Inode: e.Inode, Links: e.Links, Target: e.Target, Special: e.Special, LinkTo: e.LinkTo,
		Warning: e.Warning, Unread: e.Unread,
	}
}

// Entry returns e as the entry at path p, without its content (which
// names chunks by index there: Assemble fills it).
func (e *TreeEntry) Entry(p string) Entry {
	return Entry{
		Path: p, Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID, MTime: e.MTime, Size: e.Size,
		Inode: e.Inode, Links: e.Links, Target: e.Target, Special: e.Special, LinkTo: e.LinkTo,
		Warning: e.Warning, Unread: e.Unread,
	}
}

// treeEntry returns e as a directory object's entry named name.
func (s *Snapshot) treeEntry(e Entry, name string) TreeEntry {
	t := headOf(e, name)
	if len(e.Content) > 0 {
		t.Content = make([]TreeExtent, len(e.Content))
		for i, x := range e.Content {
			c := s.Chunks[x.Chunk]
			t.Content[i] = TreeExtent{Hash: c.Hash, StoredSize: c.StoredSize, Zero: c.Zero, ChunkLen: c.Length, Offset: x.Offset, Length: x.Length}
		}
	}
	return t
}

// Assemble fills the Files and Chunks of a snapshot in stored form (Stored)
// from its directory objects, and Trees with the objects it named; load
// returns the bytes of each object of refs, in order (it may read them in
// parallel). Chunks lists the distinct chunks in the order extents first
// name them. The result is not validated: call Validate.
func (s *Snapshot) Assemble(load func(refs []TreeRef) ([][]byte, error)) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot %s: %s", ErrInvalid, s.ID, fmt.Sprintf(format, args...))
	}
	if !s.Stored() {
		return bad("not in stored tree form")
	}
	if s.Version < VersionTrees {
		return bad("directory objects need manifest version %d, not %d", VersionTrees, s.Version)
	}
	if s.Root.Type != TypeDir || s.Root.Name != "" {
		return bad("the root is a %s named %q, not the directory itself", s.Root.Type, s.Root.Name)
	}
	objects := make(map[string][]TreeEntry)
	namedBy := make(map[string][]string) // the objects naming each object, once per naming
	trees, err := s.readObjects(load, func(ref TreeRef, _ []byte, entries []TreeEntry) {
		objects[ref.ID] = entries
		EachEntry(entries, func(e *TreeEntry) {
			if e.ID != "" {
				namedBy[e.ID] = append(namedBy[e.ID], ref.ID)
			}
		})
	})
	if err != nil {
		return err
	}
	s.Trees = make([]Chunk, 0, len(trees))
	for id, size := range trees {
		s.Trees = append(s.Trees, Chunk{Hash: id, StoredSize: size})
	}
	slices.SortFunc(s.Trees, func(a, b Chunk) int { return strings.Compare(a.Hash, b.Hash) })
	// Count what they expand to before expanding them: a hostile
	// repository can name one object from many places.
	n := countEntries(s.Root.ID, objects, make(map[string]int64), 0)
	if n >= MaxTreeEntries {
		return fmt.Errorf("%w: snapshot %s: more than %d entries, or directories nested more than %d deep",
			ErrTooLarge, s.ID, MaxTreeEntries, MaxTreeDepth)
	}
	// Expand them in walk order, into room for them all: grown by append,
	// the list of a tree of millions would be copied over and over, the
	// old copies garbage only after the next collection.
	s.Files = make([]Entry, 0, n+1)
	a := assembler{s: s, objects: objects, left: expansions(s.Root.ID, namedBy), chunks: make(map[chunkKey]int)}
	return a.add(*s.Root, ".", 0)
}

// treeWindow is how many directory objects readObjects reads and decodes
// at once: enough for load to read them in parallel.
const treeWindow = 256

// readObjects reads every distinct directory object of s, a snapshot in
// stored tree form, a level at a time (load as for Assemble), within the
// bounds on their bytes and depth, and calls visit with each one's
// reference, bytes and entries. It returns the stored size of each.
func (s *Snapshot) readObjects(load func(refs []TreeRef) ([][]byte, error), visit func(ref TreeRef, raw []byte, entries []TreeEntry)) (map[string]int64, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot %s: %s", ErrInvalid, s.ID, fmt.Sprintf(format, args...))
	}
	trees := make(map[string]int64)
	var level []TreeRef
	if s.Root.ID != "" {
		level = append(level, s.Root.TreeRef)
		trees[s.Root.ID] = s.Root.StoredSize
	}
	read := 0
	var budget atomic.Int64 // entries decoded, however many times each is named
	for depth := 0; len(level) > 0; depth++ {
		if depth > MaxTreeDepth {
			return nil, bad("directories nested more than %d deep", MaxTreeDepth)
		}
		for _, ref := range level {
			if _, err := chunk.ParseID(ref.ID); err != nil || ref.StoredSize <= 0 {
				return nil, bad("directory object %q of stored size %d", ref.ID, ref.StoredSize)
			}
		}
		// A window of objects at a time: a level can hold most of a
		// tree's objects, and decoded at once they would take as much
		// as the tree assembled.
		var next []TreeRef
		for lo := 0; lo < len(level); lo += treeWindow {
			window := level[lo:min(lo+treeWindow, len(level))]
			raws, err := load(window)
			if err != nil {
				return nil, err
			}
			for _, raw := range raws {
				if read += len(raw); read > MaxSize {
					return nil, fmt.Errorf("%w: snapshot %s: its directory objects hold more than %d bytes", ErrTooLarge, s.ID, MaxSize)
				}
			}
			decoded, err := decodeTrees(raws, &budget)
			if err != nil {
				var de *treeDecodeError
				errors.As(err, &de)
				if errors.Is(de.err, ErrTooLarge) {
					return nil, fmt.Errorf("%w: snapshot %s: %w", ErrTooLarge, s.ID, de.err)
				}
				return nil, bad("directory object %s: %v", window[de.index].ID, de.err)
			}
			for i, entries := range decoded {
				visit(window[i], raws[i], entries)
				EachEntry(entries, func(e *TreeEntry) {
					if _, seen := trees[e.ID]; e.ID != "" && !seen {
						trees[e.ID] = e.StoredSize
						next = append(next, e.TreeRef)
					}
				})
				raws[i], decoded[i] = nil, nil
			}
		}
		level = next
	}
	return trees, nil
}

// treeDecodeError is decodeTrees' error: object index did not decode.
type treeDecodeError struct {
	index int
	err   error
}

func (e *treeDecodeError) Error() string { return fmt.Sprintf("object %d: %v", e.index, e.err) }

func (e *treeDecodeError) Unwrap() error { return e.err }

// decodeTrees decodes directory objects on as many goroutines as there
// are processors.
func decodeTrees(raws [][]byte, budget *atomic.Int64) ([][]TreeEntry, error) {
	out := make([][]TreeEntry, len(raws))
	errs := make([]error, len(raws))
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), len(raws)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(raws); i = int(next.Add(1) - 1) {
				out[i], errs[i] = decodeTree(raws[i], budget)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, &treeDecodeError{index: i, err: err}
		}
	}
	return out, nil
}

// countEntries returns how many entries the directory object id expands
// to, at most MaxTreeEntries (also for one nested deeper than
// MaxTreeDepth); counted holds the counts of objects done.
func countEntries(id string, objects map[string][]TreeEntry, counted map[string]int64, depth int) int64 {
	if id == "" {
		return 0
	}
	if depth > MaxTreeDepth {
		return MaxTreeEntries
	}
	if n, ok := counted[id]; ok {
		return n
	}
	counted[id] = MaxTreeEntries // a cycle, if a hostile repository forged one, counts as too many
	n := countList(objects[id], objects, counted, depth)
	counted[id] = n
	return n
}

// countList is countEntries for a listing, an object's or one inline.
func countList(list []TreeEntry, objects map[string][]TreeEntry, counted map[string]int64, depth int) int64 {
	if depth > MaxTreeDepth {
		return MaxTreeEntries
	}
	var n int64
	for _, e := range list {
		n++
		if e.ID != "" {
			n += countEntries(e.ID, objects, counted, depth+1)
		} else if e.Inline != nil {
			n += countList(e.Inline, objects, counted, depth+1)
		}
		if n >= MaxTreeEntries {
			return MaxTreeEntries
		}
	}
	return n
}

// expansions returns how often expanding the tree of root expands each of
// its objects: once for each naming of it in each expansion of an object
// that names it (namedBy), the root once. The tree has no cycle
// (countEntries has refused those).
func expansions(root string, namedBy map[string][]string) map[string]int64 {
	memo := map[string]int64{root: 1}
	var count func(id string) int64
	count = func(id string) int64 {
		if n, ok := memo[id]; ok {
			return n
		}
		var n int64
		for _, p := range namedBy[id] {
			n += count(p)
		}
		memo[id] = n
		return n
	}
	for id := range namedBy {
		count(id)
	}
	return memo
}

// chunkKey tells chunks apart when assembling: by hash, a zero chunk by
// its length.
type chunkKey struct {
	hash   string
	zeroes int64
}

type assembler struct {
	s       *Snapshot
	objects map[string][]TreeEntry
	// left counts the expansions of each object still to come: an object
	// is let go after its last, so that a large tree is not held decoded
	// and assembled at once.
	left   map[string]int64
	chunks map[chunkKey]int
}

// add appends the entry e at path p and, for a directory, what it holds.
func (a *assembler) add(e TreeEntry, p string, depth int) error {
	if len(a.s.Files) >= MaxTreeEntries {
		return fmt.Errorf("%w: snapshot %s: more than %d entries", ErrTooLarge, a.s.ID, MaxTreeEntries)
	}
	if depth > MaxTreeDepth {
		return fmt.Errorf("%w: snapshot %s: directories nested more than %d deep", ErrInvalid, a.s.ID, MaxTreeDepth)
	}
	if (e.ID != "" || e.Inline != nil) && e.Type != TypeDir {
		return fmt.Errorf("%w: snapshot %s: entry %q: a %s names a directory object", ErrInvalid, a.s.ID, p, e.Type)
	}
	f := e.Entry(p)
	if len(e.Content) > 0 {
		f.Content = make([]Extent, len(e.Content))
		for i, x := range e.Content {
			key := chunkKey{hash: x.Hash}
			if x.Zero {
				key = chunkKey{zeroes: x.ChunkLen}
			}
			idx, ok := a.chunks[key]
			if !ok {
				idx = len(a.s.Chunks)
				a.chunks[key] = idx
				a.s.Chunks = append(a.s.Chunks, Chunk{Length: x.ChunkLen, Hash: x.Hash, StoredSize: x.StoredSize, Zero: x.Zero})
			} else if c := a.s.Chunks[idx]; c.Length != x.ChunkLen {
				return fmt.Errorf("%w: snapshot %s: entry %q: chunk %s of %d bytes, %d elsewhere", ErrInvalid, a.s.ID, p, x.Hash, x.ChunkLen, c.Length)
			}
			f.Content[i] = Extent{Chunk: idx, Offset: x.Offset, Length: x.Length}
		}
	}
	a.s.Files = append(a.s.Files, f)
	children := e.Inline
	if e.ID != "" {
		children = a.objects[e.ID]
		if a.left[e.ID]--; a.left[e.ID] <= 0 {
			delete(a.objects, e.ID)
		}
	}
	for _, c := range children {
		if c.Name == "" || c.Name == "." || c.Name == ".." || strings.ContainsRune(c.Name, '/') {
			return fmt.Errorf("%w: snapshot %s: %q holds an entry named %q", ErrInvalid, a.s.ID, p, c.Name)
		}
		child := c.Name
		if p != "." {
			child = p + "/" + c.Name
		}
		if err := a.add(c, child, depth+1); err != nil {
			return err
		}
	}
	return nil
}
