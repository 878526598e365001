package manifest

import (
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
)

// Entry types of a files-mode snapshot.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
	// TypeSpecial is a socket, device or FIFO: recorded, never restored.
	TypeSpecial = "special"
)

// Kinds of special file (Entry.Special).
const (
	SpecialFIFO   = "fifo"
	SpecialSocket = "socket"
	SpecialChar   = "char"  // a character device
	SpecialBlock  = "block" // a block device
)

// Entry is one file, directory or link of a tree.
type Entry struct {
	// Path is relative to the backed-up directory, slash-separated and
	// clean; "." is the directory itself, always the first entry.
	Path string `json:"path"`
	Type string `json:"type"`
	// Mode holds the permission bits and the setuid, setgid and sticky
	// bits, as in chmod(2): 07777 at most.
	Mode uint32 `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	// MTime is the modification time in nanoseconds since the Unix epoch.
	MTime int64 `json:"mtime"`
	// Size is a regular file's length in bytes.
	Size int64 `json:"size,omitempty"`
	// Inode and Links are the file's inode number and link count when it
	// was read; an unchanged size, mtime and inode let the next backup
	// reuse the content without reading it.
	Inode uint64 `json:"inode,omitempty"`
	Links uint64 `json:"nlink,omitempty"`
	// Target is a symlink's target, stored as is (never followed).
	Target string `json:"target,omitempty"`
	// Special says which kind of special file a TypeSpecial entry is
	// (Special*), for listings; informational, absent in older snapshots.
	Special string `json:"special,omitempty"`
	// LinkTo names an earlier regular file this one is a hard link of. The
	// entry still carries the content, so it can be restored alone.
	LinkTo string `json:"link_to,omitempty"`
	// Content is where a regular file's bytes lie, in order.
	Content []Extent `json:"content,omitempty"`
	// Warning says what went wrong backing this entry up: it could not be
	// read (Unread, no content), changed while being read (content as
	// read), or is a special file that is not restored.
	Warning string `json:"warning,omitempty"`
	Unread  bool   `json:"unread,omitempty"`
}

// Extent is Length bytes of a chunk's raw data, starting at Offset.
type Extent struct {
	Chunk  int   `json:"c"`
	Offset int64 `json:"o"`
	Length int64 `json:"n"`
}

// CheckPath returns an error unless p can name an entry: a path in manifest
// form (see EncodeName), relative, clean, without "." or ".." or an empty
// element, each element valid UTF-8 text or an encoded name. "." names the
// root. Restores rely on it: no such path leaves the restore target.
func CheckPath(p string) error {
	switch {
	case p == ".":
		return nil
	case p == "":
		return fmt.Errorf("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." || elem == "." {
			return fmt.Errorf("path %q has a %q element", p, elem)
		}
		if err := checkName(elem); err != nil {
			return fmt.Errorf("path %q: %w", p, err)
		}
	}
	return nil
}

// InRange reports whether the n bytes at off lie inside [0, size): off and
// n are not negative and off+n <= size, checked without overflowing.
func InRange(off, n, size int64) bool {
	return off >= 0 && n >= 0 && off <= size && n <= size-off
}

// Parent returns the path of the directory holding p ("." for a top-level
// entry).
func Parent(p string) string { return path.Dir(p) }

// validateFiles checks a files-mode snapshot: every path safe and unique,
// every entry's parent an earlier directory entry (so no entry is written
// through a symlink or file), hard links naming earlier files, and every
// extent inside its chunk with the extents of a file adding up to its size.
func (s *Snapshot) validateFiles(bad func(string, ...any) error) error {
	switch {
	case s.Version < 2:
		return bad("files mode needs manifest version 2, not %d", s.Version)
	case s.ID == "":
		return bad("empty id")
	case !knownHash(s.Hash):
		return bad("unknown hash %q", s.Hash)
	case len(s.Files) == 0 || s.Files[0].Path != "." || s.Files[0].Type != TypeDir:
		return bad("the first entry must be the directory \".\"")
	}
	if err := layout.CheckChunkSize(s.ChunkSize); err != nil {
		return bad("%v", err)
	}
	for i, c := range s.Chunks {
		switch {
		case c.Offset != 0 || c.Length <= 0 || c.Length > s.ChunkSize:
			return bad("chunk %d: offset %d and length %d (files-mode chunks start at 0 and hold 1 to %d bytes)", i, c.Offset, c.Length, s.ChunkSize)
		case c.Zero && (c.Hash != "" || c.StoredSize != 0):
			return bad("zero chunk %d has a hash or stored size", i)
		case c.Zero:
			continue
		}
		if _, err := chunk.ParseID(c.Hash); err != nil {
			return bad("chunk %d: %v", i, err)
		}
		if c.StoredSize <= 0 {
			return bad("chunk %d: stored size %d", i, c.StoredSize)
		}
	}
	types := make(map[string]string, len(s.Files))
	hardLinkable := make(map[string]int64) // regular files a hard link may name, with their size
	var size int64
	for i, e := range s.Files {
		if err := CheckPath(e.Path); err != nil {
			return bad("entry %d: %v", i, err)
		}
		if s.Version < 3 && (encoded(e.Path) || encoded(e.Target)) {
			return bad("entry %d: names that are not UTF-8 text need manifest version 3", i)
		}
		if _, dup := types[e.Path]; dup {
			return bad("entry %d: %q listed twice", i, e.Path)
		}
		if i > 0 {
			if e.Path == "." {
				return bad("entry %d: \".\" is not first", i)
			}
			if t := types[Parent(e.Path)]; t != TypeDir {
				if t == "" {
					return bad("entry %d: %q comes before its directory", i, e.Path)
				}
				return bad("entry %d: %q lies under a %s, not a directory", i, e.Path, t)
			}
		}
		types[e.Path] = e.Type
		if e.Mode > 0o7777 {
			return bad("entry %q: mode %o has more than permission bits", e.Path, e.Mode)
		}
		if e.Type != TypeFile && (len(e.Content) > 0 || e.Size != 0 || e.LinkTo != "" || e.Unread) {
			return bad("entry %q: a %s has no content", e.Path, e.Type)
		}
		switch e.Type {
		case TypeDir, TypeSpecial:
			if e.Target != "" {
				return bad("entry %q: a %s has no link target", e.Path, e.Type)
			}
		case TypeSymlink:
			if err := checkTarget(e.Target); err != nil {
				return bad("entry %q: %v", e.Path, err)
			}
		case TypeFile:
			if err := s.validateFile(e, hardLinkable); err != nil {
				return bad("entry %q: %v", e.Path, err)
			}
			if e.LinkTo == "" {
				hardLinkable[e.Path] = e.Size
				if !e.Unread {
					if e.Size > math.MaxInt64-size {
						return bad("entry %q: the files hold more than %d bytes", e.Path, int64(math.MaxInt64))
					}
					size += e.Size
				}
			}
		default:
			return bad("entry %q: unknown type %q", e.Path, e.Type)
		}
	}
	if size != s.Size {
		return bad("size %d, but the files hold %d bytes", s.Size, size)
	}
	return nil
}

func (s *Snapshot) validateFile(e Entry, hardLinkable map[string]int64) error {
	size, linkable := hardLinkable[e.LinkTo]
	switch {
	case e.Target != "":
		return fmt.Errorf("a file has no link target")
	case e.Size < 0:
		return fmt.Errorf("negative size %d", e.Size)
	case e.LinkTo != "" && !linkable:
		return fmt.Errorf("hard link to %q, which is not an earlier regular file", e.LinkTo)
	case e.LinkTo != "" && e.Size != size && !e.Unread:
		return fmt.Errorf("hard link of %d bytes to %q of %d", e.Size, e.LinkTo, size)
	case e.Unread && len(e.Content) > 0:
		return fmt.Errorf("unread, yet with content")
	case e.Unread:
		return nil
	}
	var sum int64
	for _, x := range e.Content {
		if x.Chunk < 0 || x.Chunk >= len(s.Chunks) {
			return fmt.Errorf("extent names chunk %d of %d", x.Chunk, len(s.Chunks))
		}
		// Written so that no sum can overflow: Offset and Length are
		// each checked against the chunk's length, which is at most
		// layout.MaxChunkSize, before they are added.
		if n := s.Chunks[x.Chunk].Length; !InRange(x.Offset, x.Length, n) || x.Length == 0 {
			return fmt.Errorf("extent [%d,+%d) outside chunk %d of %d bytes", x.Offset, x.Length, x.Chunk, n)
		}
		if sum > e.Size-x.Length {
			return fmt.Errorf("extents hold more than the file's %d bytes", e.Size)
		}
		sum += x.Length
	}
	if sum != e.Size {
		return fmt.Errorf("extents hold %d bytes, the file %d", sum, e.Size)
	}
	return nil
}

// Select returns the entries of a files-mode snapshot at or under any of
// paths, with the directories that lead to them, in manifest order. It fails
// naming a path that matches nothing.
func (s *Snapshot) Select(paths []string) ([]Entry, error) {
	if len(paths) == 0 {
		return s.Files, nil
	}
	want := make(map[string]bool)
	for _, p := range paths {
		if err := CheckPath(p); err != nil {
			return nil, err
		}
		want[p] = true
	}
	found := make(map[string]bool)
	keep := make(map[string]bool)
	under := func(p string) (string, bool) {
		for q := p; ; q = Parent(q) {
			if want[q] {
				return q, true
			}
			if q == "." {
				return "", false
			}
		}
	}
	for _, e := range s.Files {
		if q, ok := under(e.Path); ok {
			found[q] = true
			for a := e.Path; !keep[a]; a = Parent(a) {
				keep[a] = true
				if a == "." {
					break
				}
			}
		}
	}
	for _, p := range paths {
		if !found[p] {
			return nil, s.notFound(p)
		}
	}
	var out []Entry
	for _, e := range s.Files {
		if keep[e.Path] {
			out = append(out, e)
		}
	}
	return out, nil
}

// notFound is the error for a path p (manifest form) that names no entry
// of s, which is whole (PathNotFound).
func (s *Snapshot) notFound(p string) error {
	return s.PathNotFound(p, func(rel string) bool {
		_, err := s.Select([]string{rel})
		return err == nil
	})
}

// PathNotFound is the error for a path p (manifest form) that names no
// entry of snapshot s: it says what paths are relative to and, when p is
// the path of an entry as it was on the host less its leading "/", which
// path names it (exists reports whether a path names an entry).
func (s *Snapshot) PathNotFound(p string, exists func(rel string) bool) error {
	if s.Path == "" {
		return fmt.Errorf("path %q is not in snapshot %s", OSPath(p), s.ID)
	}
	if rel, ok := under("/"+p, s.Path); ok && rel != "." && exists(rel) {
		return fmt.Errorf("path %q is not in snapshot %s, whose paths are relative to the backed-up directory %s: use %q (or %q)",
			OSPath(p), s.ID, s.Path, OSPath(rel), path.Join(s.Path, OSPath(rel)))
	}
	return fmt.Errorf("path %q is not in snapshot %s (paths are relative to the backed-up directory %s)", OSPath(p), s.ID, s.Path)
}

// TreePath returns the manifest form of a path a user gives for entries
// of a snapshot that backed up the directory root: relative to root
// ("etc/nginx"), or absolute as it was on the host, under root
// ("/srv/etc/nginx" for a backup of /srv). Any other absolute path is
// taken relative to root, and ".." never climbs above it. "." is root.
func TreePath(root, p string) string {
	clean := path.Clean("/" + p)
	if strings.HasPrefix(p, "/") && root != "" {
		if rel, ok := under(clean, root); ok {
			return EncodePath(rel)
		}
	}
	if clean == "/" {
		return "."
	}
	return EncodePath(clean[1:])
}

// under returns p (absolute and clean) relative to the directory dir,
// "." for dir itself; ok is false when p is not dir or under it.
func under(p, dir string) (string, bool) {
	dir = path.Clean("/" + dir)
	if p == dir {
		return ".", true
	}
	if dir == "/" {
		return p[1:], true
	}
	rel, ok := strings.CutPrefix(p, dir+"/")
	return rel, ok
}

// hostName returns a path element as it is on the host: decoded when it
// is encoded (section 5.5 of docs/format.md).
func hostName(elem string) string {
	if raw, ok := decodeRaw(elem); ok {
		return raw
	}
	return elem
}

// WalkOrder compares paths in manifest form as a walk meets them: element
// by element, by the bytes of each name as it is on the host (a name that
// is not UTF-8 text decoded, not by its encoded form), so that a directory
// comes right before what it holds ("a", "a/x", "a-b"). Scans list
// entries, and files-mode snapshots hold them, in this order.
func WalkOrder(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == ".":
		return -1
	case b == ".":
		return 1
	}
	for {
		ea, ra, moreA := strings.Cut(a, "/")
		eb, rb, moreB := strings.Cut(b, "/")
		if c := strings.Compare(hostName(ea), hostName(eb)); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = ra, rb
	}
}
