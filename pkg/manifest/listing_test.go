package manifest_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

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
	for _, tt := range hostileTrees(t) {
		if tt.assembleOnly {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newObjectStore()
			l, err := storedSample(t, o, tt.build).LoadListing(o.load)
			if err == nil {
				for p := range l.All() {
					if manifest.CheckPath(p) != nil {
						t.Errorf("walked into %q", p)
					}
				}
				err = l.Err()
			}
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadListing, walk = %v; want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}
