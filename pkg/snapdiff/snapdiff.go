// Package snapdiff compares two snapshots: for trees, which entries were
// added, removed, changed in content, changed only in metadata (mode,
// owner, times, link structure) or changed type; for volumes, which
// chunks differ.
//
// A file's content is compared by where its bytes lie: the same extents
// of the same chunks (by hash) are the same bytes. A file that was read
// again (its modification time or inode changed) lies in other chunks
// even when its bytes did not change, so a file of the same size whose
// extents differ is compared byte by byte through a ChunkSource, which
// reads the chunks from the repository.
package snapdiff

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// Kind is how an entry changed.
type Kind string

// Kinds of change, with the letter Letter gives each (restic diff's).
const (
	Added    Kind = "added"    // +
	Removed  Kind = "removed"  // -
	Modified Kind = "modified" // M: a file's content, a symlink's target
	Metadata Kind = "metadata" // U: mode, owner, group, mtime, hard link
	Type     Kind = "type"     // T: a file became a directory, and so on
)

// Letter returns the one-letter mark of a kind: + - M U T.
func (k Kind) Letter() string {
	switch k {
	case Added:
		return "+"
	case Removed:
		return "-"
	case Modified:
		return "M"
	case Metadata:
		return "U"
	case Type:
		return "T"
	}
	return "?"
}

// Change is one entry that differs between the snapshots.
type Change struct {
	// Path is the entry's path in manifest form (manifest.Display shows it).
	Path string `json:"path"`
	Kind Kind   `json:"change"`
	// Type is the entry's type: in the newer snapshot, the older one's for
	// a removed entry; OldType is the older one's for a type change.
	Type    string `json:"type"`
	OldType string `json:"old_type,omitempty"`
	// Fields names what else differs: "mode", "uid", "gid", "mtime",
	// "link" (a hard link's file), "special", and, with Modified,
	// "content" or "target" (a symlink's).
	Fields []string `json:"fields,omitempty"`
	// Size and OldSize are a regular file's sizes in the newer and older
	// snapshot (the one it is in, for an added or removed file).
	Size    int64 `json:"size,omitempty"`
	OldSize int64 `json:"old_size,omitempty"`
}

// Summary counts the changes, and the bytes of regular files added and
// removed (hard links once).
type Summary struct {
	Added        int   `json:"added"`
	Removed      int   `json:"removed"`
	Modified     int   `json:"modified"`
	Metadata     int   `json:"metadata"`
	Type         int   `json:"type"`
	AddedBytes   int64 `json:"added_bytes"`
	RemovedBytes int64 `json:"removed_bytes"`
}

// ChunkSource reads a chunk's raw bytes by its hash.
type ChunkSource func(ctx context.Context, hash string) ([]byte, error)

// Trees compares the entries of two files-mode snapshots, old and new.
// Changes come in walk order (each directory before what it holds). src
// is asked for chunks only to compare files of equal size whose bytes
// lie in different places; nil takes those as modified.
func Trees(ctx context.Context, old, new *manifest.Snapshot, src ChunkSource) ([]Change, Summary, error) {
	if old.Mode != manifest.ModeFiles || new.Mode != manifest.ModeFiles {
		return nil, Summary{}, fmt.Errorf("snapdiff: not two trees: snapshot %s is %s, %s is %s", old.ID, old.Mode, new.ID, new.Mode)
	}
	idx := make(map[string]int, len(old.Files))
	for i, e := range old.Files {
		idx[e.Path] = i
	}
	cmp := &comparer{old: old, new: new, src: src, cache: newChunkCache(64 << 20)}
	var changes []Change
	var sum Summary
	seen := make([]bool, len(old.Files))
	for _, n := range new.Files {
		i, ok := idx[n.Path]
		if !ok {
			changes = append(changes, Change{Path: n.Path, Kind: Added, Type: n.Type, Size: n.Size})
			sum.Added++
			if n.Type == manifest.TypeFile && n.LinkTo == "" {
				sum.AddedBytes += n.Size
			}
			continue
		}
		seen[i] = true
		c, err := cmp.entry(ctx, old.Files[i], n)
		if err != nil {
			return nil, Summary{}, err
		}
		if c == nil {
			continue
		}
		changes = append(changes, *c)
		switch c.Kind {
		case Modified:
			sum.Modified++
		case Metadata:
			sum.Metadata++
		case Type:
			sum.Type++
		}
	}
	for i, o := range old.Files {
		if seen[i] {
			continue
		}
		changes = append(changes, Change{Path: o.Path, Kind: Removed, Type: o.Type, OldSize: o.Size})
		sum.Removed++
		if o.Type == manifest.TypeFile && o.LinkTo == "" {
			sum.RemovedBytes += o.Size
		}
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return manifest.WalkOrder(a.Path, b.Path) })
	return changes, sum, nil
}

type comparer struct {
	old, new *manifest.Snapshot
	src      ChunkSource
	cache    *chunkCache
}

// entry compares one path's entries; nil when they are the same.
func (c *comparer) entry(ctx context.Context, o, n manifest.Entry) (*Change, error) {
	ch := &Change{Path: n.Path, Type: n.Type}
	if o.Type != n.Type {
		ch.Kind, ch.OldType = Type, o.Type
		if o.Type == manifest.TypeFile {
			ch.OldSize = o.Size
		}
		if n.Type == manifest.TypeFile {
			ch.Size = n.Size
		}
		return ch, nil
	}
	add := func(field string, differs bool) {
		if differs {
			ch.Fields = append(ch.Fields, field)
		}
	}
	add("mode", o.Mode != n.Mode)
	add("uid", o.UID != n.UID)
	add("gid", o.GID != n.GID)
	add("mtime", o.MTime != n.MTime)
	add("link", o.LinkTo != n.LinkTo)
	add("special", o.Special != n.Special)
	var content []string
	switch n.Type {
	case manifest.TypeSymlink:
		if o.Target != n.Target {
			content = append(content, "target")
		}
	case manifest.TypeFile:
		same, err := c.sameContent(ctx, o, n)
		if err != nil {
			return nil, err
		}
		if !same {
			content = append(content, "content")
			ch.Size, ch.OldSize = n.Size, o.Size
		}
	}
	switch {
	case len(content) > 0:
		ch.Kind, ch.Fields = Modified, append(content, ch.Fields...)
	case len(ch.Fields) > 0:
		ch.Kind = Metadata
	default:
		return nil, nil
	}
	return ch, nil
}

// sameContent reports whether two regular files hold the same bytes.
func (c *comparer) sameContent(ctx context.Context, o, n manifest.Entry) (bool, error) {
	switch {
	case o.Unread != n.Unread:
		return false, nil
	case o.Unread:
		return true, nil // neither has content to compare
	case o.Size != n.Size:
		return false, nil
	}
	if sameExtents(c.old, o.Content, c.new, n.Content) {
		return true, nil
	}
	if c.src == nil || n.Size > maxCompare {
		return false, nil
	}
	a, err := c.bytes(ctx, c.old, o)
	if err != nil {
		return false, err
	}
	b, err := c.bytes(ctx, c.new, n)
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}

// sameExtents reports whether two extent lists name the same bytes: the
// same ranges of chunks with the same hashes (of zero chunks, the same
// lengths).
func sameExtents(sa *manifest.Snapshot, a []manifest.Extent, sb *manifest.Snapshot, b []manifest.Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ca, cb := sa.Chunks[a[i].Chunk], sb.Chunks[b[i].Chunk]
		if a[i].Offset != b[i].Offset || a[i].Length != b[i].Length || ca.Zero != cb.Zero || ca.Hash != cb.Hash ||
			ca.Zero && ca.Length != cb.Length {
			return false
		}
	}
	return true
}

// maxCompare bounds the bytes of one file compared in memory; a larger
// file whose bytes moved is taken as modified.
const maxCompare = 256 << 20

// bytes reads a file's content from its chunks.
func (c *comparer) bytes(ctx context.Context, s *manifest.Snapshot, e manifest.Entry) ([]byte, error) {
	out := make([]byte, 0, e.Size)
	for _, x := range e.Content {
		ch := s.Chunks[x.Chunk]
		if ch.Zero {
			out = append(out, make([]byte, x.Length)...)
			continue
		}
		data, err := c.cache.get(ctx, ch.Hash, c.src)
		if err != nil {
			return nil, fmt.Errorf("compare %s (snapshot %s): %w", manifest.Display(e.Path), s.ID, err)
		}
		if !manifest.InRange(x.Offset, x.Length, int64(len(data))) {
			return nil, fmt.Errorf("compare %s (snapshot %s): extent outside chunk %s", manifest.Display(e.Path), s.ID, ch.Hash)
		}
		out = append(out, data[x.Offset:x.Offset+x.Length]...)
	}
	return out, nil
}

// chunkCache keeps chunks read for comparisons, up to a byte budget,
// dropping the oldest first: files compared one after another often lie
// in the same packs.
type chunkCache struct {
	budget, held int64
	data         map[string][]byte
	order        []string
}

func newChunkCache(budget int64) *chunkCache {
	return &chunkCache{budget: budget, data: make(map[string][]byte)}
}

func (cc *chunkCache) get(ctx context.Context, hash string, src ChunkSource) ([]byte, error) {
	if d, ok := cc.data[hash]; ok {
		return d, nil
	}
	d, err := src(ctx, hash)
	if err != nil {
		return nil, err
	}
	for cc.held+int64(len(d)) > cc.budget && len(cc.order) > 0 {
		cc.held -= int64(len(cc.data[cc.order[0]]))
		delete(cc.data, cc.order[0])
		cc.order = cc.order[1:]
	}
	cc.data[hash], cc.held, cc.order = d, cc.held+int64(len(d)), append(cc.order, hash)
	return d, nil
}

// VolumeSummary is how two volume snapshots differ.
type VolumeSummary struct {
	OldSize int64 `json:"old_size"`
	NewSize int64 `json:"new_size"`
	// Chunks counts the chunk positions compared (the longer volume's),
	// Changed those whose bytes differ, ChangedBytes their bytes in the
	// newer volume (or the older one's, past its end).
	Chunks       int   `json:"chunks"`
	Changed      int   `json:"changed"`
	ChangedBytes int64 `json:"changed_bytes"`
}

// Volumes compares two volume snapshots chunk by chunk (by hash). Their
// chunk sizes must be equal: with others no position lines up.
func Volumes(old, new *manifest.Snapshot) (VolumeSummary, error) {
	if old.Mode != manifest.ModeVolume || new.Mode != manifest.ModeVolume {
		return VolumeSummary{}, fmt.Errorf("snapdiff: not two volumes: snapshot %s is %s, %s is %s", old.ID, old.Mode, new.ID, new.Mode)
	}
	if old.ChunkSize != new.ChunkSize {
		return VolumeSummary{}, fmt.Errorf("snapdiff: snapshots %s and %s have different chunk sizes (%d, %d): no chunk lines up",
			old.ID, new.ID, old.ChunkSize, new.ChunkSize)
	}
	s := VolumeSummary{OldSize: old.Size, NewSize: new.Size, Chunks: max(len(old.Chunks), len(new.Chunks))}
	for i := range s.Chunks {
		var o, n *manifest.Chunk
		if i < len(old.Chunks) {
			o = &old.Chunks[i]
		}
		if i < len(new.Chunks) {
			n = &new.Chunks[i]
		}
		if o != nil && n != nil && o.Length == n.Length && o.Zero == n.Zero && o.Hash == n.Hash {
			continue
		}
		s.Changed++
		if n != nil {
			s.ChangedBytes += n.Length
		} else {
			s.ChangedBytes += o.Length
		}
	}
	return s, nil
}
