package manifest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
)

// A directory object's stored bytes (docs/format.md section 5.4.1) are a
// compact binary listing rather than JSON: decoding JSON was most of the
// time a backup spent reading its parent snapshot. Integers are varints
// (encoding/binary: unsigned LEB128, signed ones zigzag), strings a uvarint
// length and their bytes, hashes and IDs 32 raw bytes. A small
// subdirectory is listed inside its parent's listing rather than in an
// object of its own (inline), so that a tree of many small directories is
// not as many small objects.

// treeMagic starts every directory object: the format's name and version.
var treeMagic = []byte("bbdir\x01")

// Entry types as stored.
var treeTypes = []string{TypeFile, TypeDir, TypeSymlink, TypeSpecial}

// Flags of a stored entry.
const (
	treeUnread  = 1 << iota // Entry.Unread
	treeHasTree             // a directory object follows: ID and stored size
	treeInline              // the directory's entries follow, listed here
)

// MaxInlineDepth bounds how deep directories listed inside their parents'
// listings nest within one object, so that decoding one is shallow.
const MaxInlineDepth = 64

// Flags of a stored extent.
const treeZero = 1 // a zero chunk: no hash, no stored size

// EncodeTree returns the stored bytes of a directory object listing
// entries, which SplitTrees writes and Assemble reads. It fails for a
// value it cannot store (an unknown type, a hash that is not one).
func EncodeTree(entries []TreeEntry) ([]byte, error) {
	return appendEntries(append([]byte(nil), treeMagic...), entries, 0)
}

// appendEntries appends the count of entries and each entry, a
// directory's inline listing (Inline, or its encoding made before,
// inlineBody) depth levels inside the object's own listing.
func appendEntries(b []byte, entries []TreeEntry, depth int) ([]byte, error) {
	if depth > MaxInlineDepth {
		return nil, fmt.Errorf("%w: listings nested more than %d deep in one directory object", ErrInvalid, MaxInlineDepth)
	}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		var flags uint64
		inline := e.inlineBody != nil || e.Inline != nil
		switch {
		case e.ID != "" && inline:
			return nil, fmt.Errorf("%w: entry %q: both a directory object and an inline listing", ErrInvalid, e.Name)
		case e.ID != "":
			flags |= treeHasTree
		case inline:
			flags |= treeInline
		}
		var err error
		if b, err = appendHead(b, &e, flags); err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(len(e.Content)))
		for _, x := range e.Content {
			if x.Zero {
				b = binary.AppendUvarint(b, treeZero)
			} else {
				b = binary.AppendUvarint(b, 0)
				id, err := chunk.ParseID(x.Hash)
				if err != nil {
					return nil, fmt.Errorf("%w: entry %q: %v", ErrInvalid, e.Name, err)
				}
				b = append(b, id[:]...)
				b = binary.AppendVarint(b, x.StoredSize)
			}
			b = binary.AppendVarint(b, x.ChunkLen)
			b = binary.AppendVarint(b, x.Offset)
			b = binary.AppendVarint(b, x.Length)
		}
		switch {
		case e.ID != "":
			id, err := chunk.ParseID(e.ID)
			if err != nil {
				return nil, fmt.Errorf("%w: entry %q: directory object: %v", ErrInvalid, e.Name, err)
			}
			b = append(b, id[:]...)
			b = binary.AppendVarint(b, e.StoredSize)
		case e.inlineBody != nil:
			b = append(b, e.inlineBody...)
		case e.Inline != nil:
			var err error
			if b, err = appendEntries(b, e.Inline, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// appendHead appends what every stored entry starts with: its type, its
// flags (treeUnread from e, the others given), its name, owner, times,
// size, inode and links, and its four strings.
func appendHead(b []byte, e *TreeEntry, flags uint64) ([]byte, error) {
	t := slices.Index(treeTypes, e.Type)
	if t < 0 {
		return nil, fmt.Errorf("%w: entry %q: unknown type %q", ErrInvalid, e.Name, e.Type)
	}
	if e.Unread {
		flags |= treeUnread
	}
	b = binary.AppendUvarint(b, uint64(t))
	b = binary.AppendUvarint(b, flags)
	b = appendString(b, e.Name)
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendVarint(b, int64(e.UID))
	b = binary.AppendVarint(b, int64(e.GID))
	b = binary.AppendVarint(b, e.MTime)
	b = binary.AppendVarint(b, e.Size)
	b = binary.AppendUvarint(b, e.Inode)
	b = binary.AppendUvarint(b, e.Links)
	for _, s := range []string{e.Target, e.Special, e.LinkTo, e.Warning} {
		b = appendString(b, s)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// errTreeShort is a directory object that ends inside a value.
var errTreeShort = errors.New("cut short")

// treeReader reads the values of a directory object in order; the first
// error sticks. budget, if set, counts the entries decoded, across
// objects, and refuses more than MaxTreeEntries.
type treeReader struct {
	b      []byte
	err    error
	budget *atomic.Int64
	// ids holds the IDs read so far: the files of a directory share a
	// few packs, and a tree of millions would otherwise hold one string
	// of the same 64 digits per file.
	ids map[[chunk.IDSize]byte]string
}

func (r *treeReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	return readNumber(r, v, n)
}

func (r *treeReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	return readNumber(r, v, n)
}

// readNumber consumes the n bytes of v that binary.Uvarint or Varint
// read, or records why it could not (n <= 0) and returns 0.
func readNumber[T uint64 | int64](r *treeReader, v T, n int) T {
	switch {
	case n == 0:
		r.err = errTreeShort
	case n < 0:
		r.err = errors.New("integer overflows 64 bits")
	default:
		r.b = r.b[n:]
		return v
	}
	return 0
}

// count reads a count of items each at least min bytes long, refusing
// one the rest of the object cannot hold.
func (r *treeReader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = fmt.Errorf("%d items cannot fit in the %d bytes left", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *treeReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errTreeShort
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *treeReader) id() string {
	if r.err != nil {
		return ""
	}
	if len(r.b) < chunk.IDSize {
		r.err = errTreeShort
		return ""
	}
	key := [chunk.IDSize]byte(r.b[:chunk.IDSize])
	r.b = r.b[chunk.IDSize:]
	if s, ok := r.ids[key]; ok {
		return s
	}
	s := hex.EncodeToString(key[:])
	if r.ids == nil {
		r.ids = make(map[[chunk.IDSize]byte]string)
	}
	r.ids[key] = s
	return s
}

// DecodeTree decodes a directory object's stored bytes (EncodeTree). Only
// the form is checked: what the entries say is checked once the snapshot
// is assembled (Assemble, Validate). An error wraps ErrInvalid.
func DecodeTree(raw []byte) ([]TreeEntry, error) {
	entries, err := decodeTree(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: directory object: %w", ErrInvalid, err)
	}
	return entries, nil
}

// decodeTree is DecodeTree, its error not wrapped, counting the entries
// against budget when it is set.
func decodeTree(raw []byte, budget *atomic.Int64) ([]TreeEntry, error) {
	if len(raw) < len(treeMagic) || string(raw[:len(treeMagic)]) != string(treeMagic) {
		return nil, errors.New("not a directory object of a known version")
	}
	r := &treeReader{b: raw[len(treeMagic):], budget: budget}
	entries, err := r.entries(0)
	if err != nil {
		return nil, err
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	return entries, nil
}

// head reads what appendHead wrote into e and returns the entry's flags,
// refusing an unknown type, flags other than treeUnread and allowed, and
// values out of range.
func (r *treeReader) head(e *TreeEntry, allowed uint64) (uint64, error) {
	t, flags := r.uvarint(), r.uvarint()
	if r.err != nil {
		return 0, r.err
	}
	if t >= uint64(len(treeTypes)) || flags&^(treeUnread|allowed) != 0 {
		return 0, fmt.Errorf("type %d, flags %#x", t, flags)
	}
	e.Type, e.Unread = treeTypes[t], flags&treeUnread != 0
	e.Name = r.string()
	mode := r.uvarint()
	if mode > math.MaxUint32 {
		return 0, fmt.Errorf("mode %d", mode)
	}
	e.Mode = uint32(mode)
	uid, gid := r.varint(), r.varint()
	if uid < math.MinInt32 || uid > math.MaxUint32 || gid < math.MinInt32 || gid > math.MaxUint32 {
		return 0, fmt.Errorf("owner %d, group %d", uid, gid)
	}
	e.UID, e.GID = int(uid), int(gid)
	e.MTime, e.Size = r.varint(), r.varint()
	e.Inode, e.Links = r.uvarint(), r.uvarint()
	e.Target, e.Special, e.LinkTo, e.Warning = r.string(), r.string(), r.string(), r.string()
	return flags, r.err
}

// entries reads a count and that many entries, depth listings deep.
func (r *treeReader) entries(depth int) ([]TreeEntry, error) {
	if depth > MaxInlineDepth {
		return nil, fmt.Errorf("listings nested more than %d deep", MaxInlineDepth)
	}
	// An entry takes at least 15 bytes: type, flags, name, mode, owner,
	// group, mtime, size, inode, links, four strings and an extent count.
	n := r.count(15)
	if r.budget != nil && r.budget.Add(int64(n)) > MaxTreeEntries {
		return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxTreeEntries)
	}
	entries := make([]TreeEntry, n)
	for i := range entries {
		e := &entries[i]
		flags, err := r.head(e, treeHasTree|treeInline)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if flags&treeHasTree != 0 && flags&treeInline != 0 {
			return nil, fmt.Errorf("entry %d: flags %#x", i, flags)
		}
		if n := r.count(4); n > 0 {
			e.Content = make([]TreeExtent, n)
			for j := range e.Content {
				x := &e.Content[j]
				xf := r.uvarint()
				switch {
				case r.err != nil:
				case xf == treeZero:
					x.Zero = true
				case xf == 0:
					x.Hash, x.StoredSize = r.id(), r.varint()
				default:
					return nil, fmt.Errorf("entry %d, extent %d: flags %#x", i, j, xf)
				}
				x.ChunkLen, x.Offset, x.Length = r.varint(), r.varint(), r.varint()
			}
		}
		if flags&treeHasTree != 0 {
			e.ID, e.StoredSize = r.id(), r.varint()
		}
		if r.err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, r.err)
		}
		if flags&treeInline != 0 {
			inline, err := r.entries(depth + 1)
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", i, err)
			}
			e.Inline = inline
			if e.Inline == nil {
				e.Inline = []TreeEntry{}
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return entries, nil
}

// entriesMagic starts what AppendEntries writes.
var entriesMagic = []byte("bbent\x01")

// AppendEntries appends entries, which have no content, to b in a compact
// binary form: each one's head as a directory object stores it
// (appendHead), named by its whole path. A form to hold a scan in memory,
// not a stored format; DecodeEntries reads it back.
func AppendEntries(b []byte, entries []Entry) ([]byte, error) {
	b = append(b, entriesMagic...)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		if len(e.Content) > 0 {
			return nil, fmt.Errorf("%w: entry %q: content cannot be held here", ErrInvalid, e.Path)
		}
		head := headOf(e, e.Path)
		var err error
		if b, err = appendHead(b, &head, 0); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// DecodeEntries reads entries AppendEntries wrote.
func DecodeEntries(raw []byte) ([]Entry, error) {
	bad := func(err error) error { return fmt.Errorf("%w: entries: %w", ErrInvalid, err) }
	if !bytes.HasPrefix(raw, entriesMagic) {
		return nil, bad(errors.New("not a list of entries"))
	}
	r := &treeReader{b: raw[len(entriesMagic):]}
	out := make([]Entry, r.count(11))
	for i := range out {
		var head TreeEntry
		if _, err := r.head(&head, 0); err != nil {
			return nil, bad(fmt.Errorf("entry %d: %w", i, err))
		}
		out[i] = head.Entry(head.Name)
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	if r.err != nil {
		return nil, bad(r.err)
	}
	return out, nil
}
