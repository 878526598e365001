package manifest_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// describe returns every entry of a listing's walk, one line each, with
// what a backup takes from it.
func describe(t *testing.T, l *manifest.Listing) []string {
	t.Helper()
	var out []string
	for p, e := range l.All() {
		line := fmt.Sprintf("%s %s %o %d:%d %d %d %d %d %q %q %q %v", p, e.Type, e.Mode, e.UID, e.GID, e.MTime, e.Size,
			e.Inode, e.Links, e.Target, e.LinkTo, e.Warning, e.Unread)
		for _, x := range e.Content {
			line += fmt.Sprintf(" [%.8s %d %v %d %d %d]", x.Hash, x.StoredSize, x.Zero, x.ChunkLen, x.Offset, x.Length)
		}
		out = append(out, line)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("walk: %v", err)
	}
	return out
}

// TestListingWalksAsWhole: a listing loaded from directory objects walks
// the same entries, in the same order and with the same content, as the
// snapshot held whole, however the directories are split into objects, and
// names each of its chunks once.
func TestListingWalksAsWhole(t *testing.T) {
	t.Parallel()
	samples := map[string]*manifest.Snapshot{"sample": filesSample(), "a wide directory": bigDirSample(300)}
	for name, s := range samples {
		for _, opts := range []manifest.TreeOptions{{}, manifest.DefaultTreeOptions} {
			t.Run(fmt.Sprintf("%s/inline %d", name, opts.InlineMax), func(t *testing.T) {
				t.Parallel()
				o := newObjectStore()
				stored, err := s.SplitTreesWith(opts, o.put)
				if err != nil {
					t.Fatal(err)
				}
				l, err := stored.LoadListing(o.load)
				if err != nil {
					t.Fatal(err)
				}
				want, got := describe(t, s.WholeListing()), describe(t, l)
				if !slices.Equal(got, want) {
					t.Errorf("walked\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				var gotChunks, wantChunks []string
				for _, c := range l.Chunks() {
					gotChunks = append(gotChunks, fmt.Sprintf("%s %d %d", c.Hash, c.Length, c.StoredSize))
				}
				for _, c := range s.Chunks {
					wantChunks = append(wantChunks, fmt.Sprintf("%s %d %d", c.Hash, c.Length, c.StoredSize))
				}
				slices.Sort(gotChunks)
				slices.Sort(wantChunks)
				if !slices.Equal(gotChunks, slices.Compact(wantChunks)) {
					t.Errorf("chunks %q, want %q", gotChunks, wantChunks)
				}
				// A walk cut short by its caller is no error, and the
				// next walks from the start.
				for range l.All() {
					break
				}
				if l.Err() != nil {
					t.Errorf("a walk stopped by its caller: %v", l.Err())
				}
				if again := describe(t, l); !slices.Equal(again, want) {
					t.Error("a second walk differs from the first")
				}
			})
		}
	}
}

// TestListingRejects: what a hostile or damaged repository's objects hold
// is refused when loaded or when the walk reaches it, as Assemble refuses
// it, never walked into.
func TestListingRejects(t *testing.T) {
	t.Parallel()
	obj := func(entries ...manifest.TreeEntry) []byte {
		raw, err := manifest.EncodeTree(entries)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	file := manifest.TreeEntry{Name: "f", Type: manifest.TypeFile, Mode: 0o644}
	tests := []struct {
		name    string
		build   func(o *objectStore) manifest.TreeRef
		wantMsg string
	}{
		{"a name with a slash", func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "../etc", Type: manifest.TypeFile}))
			return ref
		}, `named "../etc"`},
		{"a file naming a directory object", func(o *objectStore) manifest.TreeRef {
			inner, _ := o.put(obj(file))
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "x", Type: manifest.TypeFile, TreeRef: inner}))
			return ref
		}, "names a directory object"},
		{"an inline listing escaping by name", func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "d", Type: manifest.TypeDir,
				Inline: []manifest.TreeEntry{{Name: "..", Type: manifest.TypeDir}}}))
			return ref
		}, `named ".."`},
		{"the same name twice", func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(file, manifest.TreeEntry{Name: "g", Type: manifest.TypeFile}, file))
			return ref
		}, "twice"},
		{"a missing object", func(o *objectStore) manifest.TreeRef {
			return manifest.TreeRef{ID: chunk.Sum([]byte("gone")).String(), StoredSize: 50}
		}, "no object"},
		{"not a directory object", func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put([]byte(`{"entries":[]}`))
			return ref
		}, "not a directory object"},
		{"cut short", func(o *objectStore) manifest.TreeRef {
			raw := obj(file)
			ref, _ := o.put(raw[:len(raw)-3])
			return ref
		}, "directory object"},
		{"a bad object name", func(o *objectStore) manifest.TreeRef {
			return manifest.TreeRef{ID: "../../config", StoredSize: 50}
		}, "directory object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newObjectStore()
			stored, err := filesSample().SplitTrees(o.put)
			if err != nil {
				t.Fatal(err)
			}
			stored.Root.TreeRef = tt.build(o)
			l, err := stored.LoadListing(o.load)
			if err == nil {
				for p := range l.All() {
					if manifest.CheckPath(p) != nil {
						t.Errorf("walked into %q", p)
					}
				}
				err = l.Err()
				if err != nil && !errors.Is(err, manifest.ErrInvalid) {
					t.Errorf("walk: %v, not ErrInvalid", err)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadListing, walk = %v; want an error mentioning %q", err, tt.wantMsg)
			}
		})
	}
}
