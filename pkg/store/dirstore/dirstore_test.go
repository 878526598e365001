package dirstore_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/store/storetest"
)

func newStore(t testing.TB) *dirstore.Store {
	t.Helper()
	s, err := dirstore.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return newStore(b) })
}

func TestNewCreatesDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b", "repo")
	s, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("New did not create %s: %v", dir, err)
	}
	if got := s.Location(); got != dir {
		t.Errorf("Location = %q, want %q", got, dir)
	}
}

func TestNewError(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(tmp, "readonly")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		wantErr  error
		skipRoot bool // root ignores permission bits
	}{
		{"parent is a file", filepath.Join(file, "repo"), syscall.ENOTDIR, false},
		{"path is a file", file, syscall.ENOTDIR, false},
		{"permission denied", filepath.Join(readOnly, "repo"), store.ErrAccessDenied, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skipRoot && os.Geteuid() == 0 {
				t.Skip("root ignores permission bits")
			}
			_, err := dirstore.New(tt.dir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New(%q) error = %v, want %v", tt.dir, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.dir) {
				t.Errorf("error %q does not name %s", err, tt.dir)
			}
		})
	}
}

func TestListSkipsTempFiles(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "chunks/ab/abcd", []byte("data")); err != nil {
		t.Fatal(err)
	}
	// Temporary files a crash left behind, at the root and next to an object.
	for _, name := range []string{".tmp-123", "chunks/ab/.tmp-456"} {
		if err := os.WriteFile(filepath.Join(s.Location(), name), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix string
		want   []store.Info
	}{
		{"", []store.Info{{Key: "chunks/ab/abcd", Size: 4}}},
		{"chunks/ab/", []store.Info{{Key: "chunks/ab/abcd", Size: 4}}},
		{"chunks/ab/.tmp", nil},
		{".tmp", nil},
	}
	for _, tt := range tests {
		var got []store.Info
		for info, err := range s.List(ctx, tt.prefix) {
			if err != nil {
				t.Fatalf("List(%q): %v", tt.prefix, err)
			}
			got = append(got, info)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.prefix, got, tt.want)
		}
	}
}

func TestTempNamesAreInvalidKeys(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for _, key := range []string{".tmp-1", "chunks/.tmp-1", ".tmp-dir/x"} {
		if err := s.Put(t.Context(), key, []byte("x")); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v, want %v", key, err, store.ErrInvalidKey)
		}
	}
}

func TestPutLeavesNoTempFiles(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if err := s.Put(t.Context(), "chunks/ab/abcd", []byte("data")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(s.Location(), "chunks", "ab"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"abcd"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v", names, want)
	}
}

func TestPutPermissionDenied(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root ignores permission bits")
	}
	s := newStore(t)
	if err := os.Chmod(s.Location(), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(s.Location(), 0o700) })
	err := s.Put(t.Context(), "chunks/ab/abcd", []byte("data"))
	if !errors.Is(err, store.ErrAccessDenied) {
		t.Errorf("Put into a read-only store: error = %v, want %v", err, store.ErrAccessDenied)
	}
}

// TestPutNoSpace fills a small file system: a Put that does not fit fails
// with store.ErrNoSpace, leaves no temporary file, and what was stored
// before stays readable. The objects are large and aligned, as chunks are,
// so the direct-write path is the one that runs out of space (tmpfs takes
// direct writes since Linux 6.6; before, the buffered fallback runs).
func TestPutNoSpace(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a small tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	s, err := dirstore.New(filepath.Join(mnt, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	first := directio.Alloc(1 << 20)
	for i := range first {
		first[i] = byte(i % 251)
	}
	if err := s.Put(t.Context(), "chunks/aa/first", first); err != nil {
		t.Fatalf("first Put: %v", err)
	}
	err = s.Put(t.Context(), "chunks/bb/second", directio.Alloc(8<<20))
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "chunks/bb/second") {
		t.Fatalf("Put of 8 MiB into 4 MiB: error = %v, want %v naming the key", err, store.ErrNoSpace)
	}
	for _, dir := range []string{filepath.Join("chunks", "bb"), ".tmp-writes"} {
		if entries, err := os.ReadDir(filepath.Join(s.Location(), dir)); err != nil && !errors.Is(err, fs.ErrNotExist) || len(entries) != 0 {
			t.Errorf("after the failed Put %s holds %v (%v), want nothing", dir, entries, err)
		}
	}
	if got, err := s.Get(t.Context(), "chunks/aa/first"); err != nil || !bytes.Equal(got, first) {
		t.Errorf("the first object after the failed Put: %d bytes, %v", len(got), err)
	}
}

// TestRemovesStaleTemp: a writer killed between creating its temporary
// file and renaming it leaves the file behind; the next store opened on the
// directory removes it once it is older than any write takes, and leaves
// a write in progress alone. Listings never show either.
func TestRemovesStaleTemp(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "chunks/aa/kept", []byte("object")); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, ".tmp-writes")
	stale, fresh := filepath.Join(tmp, ".tmp-crashed"), filepath.Join(tmp, ".tmp-in-progress")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half a chunk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for info, err := range s.List(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if !slices.Equal(keys, []string{"chunks/aa/kept"}) {
		t.Errorf("List = %q, want only the object put, no temporary file", keys)
	}
	if _, err := dirstore.New(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale temporary file is still there (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a write in progress was removed: %v", err)
	}
}
