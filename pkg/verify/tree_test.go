package verify_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/source"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/verify"
)

type treeBundle struct {
	repo     *repository.Repository
	repoRoot string
	snap     *manifest.Snapshot
	src      string // the tree the snapshot was taken of
}

// treeSetup writes a tree, scans it as a reader does and packs the files'
// content end to end into chunks of chunkSize, as a files-mode backup
// does: small files share a chunk, a large one spans several, and a chunk
// of zeros is a zero chunk.
func treeSetup(t *testing.T) *treeBundle {
	t.Helper()
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "src")
	files := map[string][]byte{
		"a.txt":          []byte("alpha\n"),
		"b.txt":          []byte("bravo\n"),
		"dir/c.txt":      []byte("charlie\n"),
		"dir/sub/big":    bytes.Repeat([]byte("0123456789abcdef"), 700), // 11200 bytes: three chunks
		"dir/empty.file": nil,
		"zeros":          make([]byte, 2*chunkSize), // ends up in a zero chunk
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "emptydir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "b.txt"), filepath.Join(src, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}

	var entries []manifest.Entry
	if err := source.ScanTree(ctx, src, func(e manifest.Entry) error { entries = append(entries, e); return nil }, func(string) {}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	st, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(ctx, st, repository.OpenOptions{CreatePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	snap := &manifest.Snapshot{
		ID: repository.NewSnapshotID(), Time: time.Now().UTC(), Host: "host1", Path: src,
		Mode: manifest.ModeFiles, SourceKind: manifest.KindDir, ChunkSize: chunkSize, Hash: "sha256", Compression: "zstd", Level: "fastest",
	}
	var pack []byte
	flush := func() {
		if len(pack) == 0 {
			return
		}
		c := manifest.Chunk{Length: int64(len(pack))}
		if chunk.IsZero(pack) {
			c.Zero = true
		} else {
			id := chunk.Sum(pack)
			sealed := sealer.Seal(nil, id, pack)
			if err := repo.PutChunk(ctx, id, sealed); err != nil {
				t.Fatal(err)
			}
			c.Hash, c.StoredSize = id.String(), int64(len(sealed))
		}
		snap.Chunks = append(snap.Chunks, c)
		pack = nil
	}
	byPath := make(map[string]int)
	for i := range entries {
		e := &entries[i]
		byPath[e.Path] = i
		if e.Type != manifest.TypeFile {
			continue
		}
		if e.LinkTo != "" {
			e.Content = entries[byPath[e.LinkTo]].Content
			continue
		}
		data := files[e.Path]
		if e.Path == "hard" {
			data = files["b.txt"]
		}
		for len(data) > 0 {
			n := min(len(data), chunkSize-len(pack))
			e.Content = append(e.Content, manifest.Extent{Chunk: len(snap.Chunks), Offset: int64(len(pack)), Length: int64(n)})
			pack = append(pack, data[:n]...)
			data = data[n:]
			if len(pack) == chunkSize {
				flush()
			}
		}
		snap.Size += e.Size
	}
	flush()
	snap.Files = entries
	snap.SetVersion()
	if err := repo.SaveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	b := &treeBundle{repo: repo, repoRoot: root, src: src}
	if b.snap, err = repo.LoadSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	return b
}

func differences(t *testing.T, err error) []*verify.Difference {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []*verify.Difference
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var d *verify.Difference
		if !errors.As(e, &d) {
			t.Fatalf("joined error %v (%T) is not a *verify.Difference", e, e)
		}
		out = append(out, d)
	}
	return out
}

func TestTreeOK(t *testing.T) {
	t.Parallel()
	b := treeSetup(t)
	zeros := 0
	for _, c := range b.snap.Chunks {
		if c.Zero {
			zeros++
		}
	}
	if zeros == 0 {
		t.Fatal("the test tree made no zero chunk")
	}
	for _, compare := range []string{"", b.src} {
		rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{Compare: compare, Workers: 3})
		if err != nil {
			t.Fatalf("compare %q: %v", compare, err)
		}
		wantCompared := int64(0)
		if compare != "" {
			wantCompared = b.snap.Size
		}
		if rep.Chunks != len(b.snap.Chunks) || rep.StoredChunks != len(b.snap.Chunks)-zeros || rep.Bytes != b.snap.Size ||
			rep.ComparedBytes != wantCompared || rep.Damaged != nil || rep.DamagedFiles != nil || rep.Differences != nil {
			t.Errorf("compare %q: report %+v, want %d chunks (%d zero), %d bytes, %d compared, nothing damaged or different",
				compare, rep, len(b.snap.Chunks), zeros, b.snap.Size, wantCompared)
		}
	}
}

func TestTreeCompareDiffers(t *testing.T) {
	t.Parallel()
	keepTime := func(t *testing.T, p string, change func()) {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		change()
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		change func(t *testing.T, src string)
		path   string // the one path that differs
		what   string // a piece of what differs
	}{
		{"content, same size and time", func(t *testing.T, src string) {
			p := filepath.Join(src, "dir/sub/big")
			keepTime(t, p, func() {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte("X"), 9000); err != nil {
					t.Fatal(err)
				}
			})
		}, "dir/sub/big", "content differs in bytes 8172 to 11199"}, // its part in the third chunk
		{"mode", func(t *testing.T, src string) {
			if err := os.Chmod(filepath.Join(src, "a.txt"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "a.txt", "mode 0600, the snapshot has 0644"},
		{"size", func(t *testing.T, src string) {
			p := filepath.Join(src, "dir/c.txt")
			keepTime(t, p, func() {
				if err := os.WriteFile(p, []byte("charlie!\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}, "dir/c.txt", "size 9, the snapshot has 8"},
		{"mtime", func(t *testing.T, src string) {
			if err := os.Chtimes(filepath.Join(src, "dir/c.txt"), time.Now(), time.Unix(1e9, 0)); err != nil {
				t.Fatal(err)
			}
		}, "dir/c.txt", "modified 2001-09-09T01:46:40Z, the snapshot has"},
		{"symlink target", func(t *testing.T, src string) {
			p := filepath.Join(src, "link")
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			keepTime(t, src, func() {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("b.txt", p); err != nil {
					t.Fatal(err)
				}
			})
			ts := unix.NsecToTimespec(fi.ModTime().UnixNano())
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.Fatal(err)
			}
		}, "link", `symlink to "b.txt", the snapshot has "a.txt"`},
		{"missing file", func(t *testing.T, src string) {
			keepTime(t, filepath.Join(src, "dir"), func() {
				if err := os.Remove(filepath.Join(src, "dir/c.txt")); err != nil {
					t.Fatal(err)
				}
			})
		}, "dir/c.txt", "missing"},
		{"missing directory, named once", func(t *testing.T, src string) {
			keepTime(t, filepath.Join(src, "dir"), func() {
				if err := os.RemoveAll(filepath.Join(src, "dir/sub")); err != nil {
					t.Fatal(err)
				}
			})
		}, "dir/sub", "missing"},
		{"type", func(t *testing.T, src string) {
			keepTime(t, src, func() {
				if err := os.Remove(filepath.Join(src, "pipe")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(src, "pipe"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			})
		}, "pipe", "is a file, the snapshot has a FIFO"},
		{"extra entry", func(t *testing.T, src string) {
			keepTime(t, filepath.Join(src, "emptydir"), func() {
				if err := os.MkdirAll(filepath.Join(src, "emptydir/new/deeper"), 0o755); err != nil {
					t.Fatal(err)
				}
			})
		}, "emptydir/new", "not in the snapshot"},
		{"hard link broken", func(t *testing.T, src string) {
			p := filepath.Join(src, "hard")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			keepTime(t, src, func() {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("bravo\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			})
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, "hard", "not a hard link of b.txt"},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, struct {
			name   string
			change func(t *testing.T, src string)
			path   string
			what   string
		}{"owner", func(t *testing.T, src string) {
			if err := os.Lchown(filepath.Join(src, "a.txt"), 4242, 4343); err != nil {
				t.Fatal(err)
			}
		}, "a.txt", "owner 4242:4343, the snapshot has 0:0"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := treeSetup(t)
			tt.change(t, b.src)
			rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{Compare: b.src})
			ds := differences(t, err)
			if len(ds) != 1 || ds[0].Path != tt.path || !strings.Contains(ds[0].What, tt.what) {
				t.Fatalf("differences %v, want one at %s saying %q", err, tt.path, tt.what)
			}
			if !errors.Is(err, verify.ErrDiffers) || len(rep.Differences) != 1 || rep.Damaged != nil {
				t.Errorf("report %+v, error %v: want one difference matching ErrDiffers, no damage", rep, err)
			}
			if want := tt.path + ": "; !strings.HasPrefix(ds[0].Error(), want) {
				t.Errorf("difference %q does not start with the path %q", ds[0].Error(), want)
			}
		})
	}
}

func TestTreeDamaged(t *testing.T) {
	t.Parallel()
	b := treeSetup(t)
	// Chunk 0 packs the small files: a.txt, b.txt, dir/c.txt (walk order)
	// and the start of dir/sub/big; hard, a link of b.txt, shares it.
	id, err := b.snap.Chunks[0].ID()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.repoRoot, filepath.FromSlash(repository.ChunkKey(id)))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0x40
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range b.snap.Files {
		if slices.ContainsFunc(e.Content, func(x manifest.Extent) bool { return x.Chunk == 0 }) {
			want = append(want, e.Path)
		}
	}
	if !slices.Contains(want, "hard") || !slices.Contains(want, "a.txt") || !slices.Contains(want, "dir/sub/big") {
		t.Fatalf("chunk 0 holds %q; the test expects a.txt, hard and dir/sub/big among them", want)
	}
	for _, compare := range []string{"", b.src} {
		rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{Compare: compare})
		if !slices.Equal(rep.Damaged, []int{0}) || !slices.Equal(rep.DamagedFiles, want) {
			t.Errorf("compare %q: damaged chunks %v files %q, want [0] and %q", compare, rep.Damaged, rep.DamagedFiles, want)
		}
		fs := findings(t, err)
		if len(fs) != 1 || !slices.Equal(fs[0].Files, want) || !errors.Is(err, chunk.ErrCorrupt) || errors.Is(err, verify.ErrDiffers) {
			t.Fatalf("compare %q: findings %v, want one corrupt chunk naming %q", compare, err, want)
		}
		if msg := fs[0].Error(); !strings.Contains(msg, "chunk 0 ("+b.snap.Chunks[0].Hash+") of a.txt, ") || !strings.Contains(msg, "more files") {
			t.Errorf("finding %q does not name the chunk and its files", msg)
		}
	}
}

func TestTreeCompareNotADirectory(t *testing.T) {
	t.Parallel()
	b := treeSetup(t)
	for _, p := range []string{filepath.Join(b.src, "a.txt"), filepath.Join(b.src, "nope")} {
		rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{Compare: p})
		if rep != nil || err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("compare with %s: %+v, %v; want an error naming it", p, rep, err)
		}
	}
}
