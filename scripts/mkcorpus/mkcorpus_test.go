package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
)

// fakeMachine makes a small machine's worth of files under dir and returns
// roots over them: source files, docs, libraries, a binary, compressed
// files.
func fakeMachine(t *testing.T) []root {
	t.Helper()
	dir := t.TempDir()
	write := func(rel string, size int) {
		t.Helper()
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		line := []byte("func f" + rel + "() { return nil } // " + strconv.Itoa(size) + "\n")
		if err := os.WriteFile(path, bytes.Repeat(line, size/len(line)+1)[:size], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		write(fmt.Sprintf("src/pkg%d/file%d.go", i%17, i), 100+i*37)
	}
	for i := range 80 {
		write(fmt.Sprintf("share/doc/p%d/README", i), 2000+i)
		write(fmt.Sprintf("share/doc/p%d/changelog.gz", i), 500+i)
	}
	for i := range 60 {
		write(fmt.Sprintf("lib/libx%d.so", i), 40000+i)
	}
	write("bin/tool", 3<<20)
	return []root{
		{path: filepath.Join(dir, "src"), cat: catSource},
		{path: filepath.Join(dir, "share"), cat: catDoc},
		{path: filepath.Join(dir, "lib"), cat: catLibrary},
		{path: filepath.Join(dir, "bin"), cat: catBinary},
		{path: filepath.Join(dir, "missing"), cat: catLog},
	}
}

// listTree returns every regular file under dir with its content.
func listTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestTree(t *testing.T) {
	t.Parallel()
	roots := fakeMachine(t)
	tests := []struct {
		name  string
		files int
	}{
		{"fewer than the machine has", 200},
		{"more than the machine has", 700}, // the rest are generated logs
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var trees [2]map[string][]byte
			for i := range trees {
				out := filepath.Join(t.TempDir(), "tree")
				if err := buildTree(t.Context(), out, treeOptions{files: tt.files, seed: 7, roots: roots, log: io.Discard}); err != nil {
					t.Fatal(err)
				}
				trees[i] = listTree(t, out)
				if _, err := os.Stat(out + ".manifest"); err != nil {
					t.Errorf("no manifest: %v", err)
				}
			}
			if got := len(trees[0]); got != tt.files {
				t.Errorf("files = %d, want %d", got, tt.files)
			}
			sameSeedSameTree(t, trees[0], trees[1])
		})
	}
}

func TestTreeRefusesExisting(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	if err := buildTree(t.Context(), out, treeOptions{files: 1, seed: 1, roots: fakeMachine(t), log: io.Discard}); err == nil {
		t.Fatal("buildTree over an existing directory: no error")
	}
}

func TestLogCompresses(t *testing.T) {
	t.Parallel()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(3) { // one of each format
		var buf bytes.Buffer
		if err := writeLog(&buf, 1<<20, seed); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 1<<20 {
			t.Fatalf("seed %d: %d bytes, want %d", seed, buf.Len(), 1<<20)
		}
		// Real logs compress several times over but not to nothing.
		ratio := float64(buf.Len()) / float64(len(enc.EncodeAll(buf.Bytes(), nil)))
		if ratio < 2 || ratio > 20 {
			t.Errorf("seed %d: zstd ratio %.1f, want a log's 2-20", seed, ratio)
		}
	}
}

func TestImage(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"mkfs.ext4", "dumpe2fs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipOrFail(t, "%v", err)
		}
	}
	out := filepath.Join(t.TempDir(), "vol.img")
	const size = 64 << 20
	if err := buildImage(t.Context(), out, imageOptions{
		size: size, free: 0.25, incompressible: 0.10, seed: 1, roots: fakeMachine(t), log: io.Discard,
	}); err != nil {
		t.Fatal(err)
	}
	st, err := mkfs(t.Context(), filepath.Join(t.TempDir(), "probe.img"), t.TempDir(), 64<<20, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if st.blockCount*st.blockSize != size {
		t.Errorf("probe: %d blocks of %d, want %d bytes", st.blockCount, st.blockSize, size)
	}
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != size {
		t.Errorf("image size %d, want %d", info.Size(), size)
	}
	// Written in full: no holes.
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Blocks*512 < size {
		t.Errorf("image has holes: %d bytes allocated of %d", st.Blocks*512, size)
	}
	if b, err := exec.Command("e2fsck", "-fn", out).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, b)
	}
}

func TestSmallTree(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		files     int
		wantDirs  int // leaf directories
		deepest   string
		wantError bool
	}{
		{"one directory, not full", 42, 1, "00/f041.log", false},
		{"directories filled in order", 250, 3, "02/f049.log", false},
		{"a second level", 10_050, 101, "01/00/f049.log", false},
		{"exactly one level full", 10_000, 100, "99/f099.log", false},
		{"nothing", 0, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var trees [2]map[string][]byte
			for i := range trees {
				out := filepath.Join(t.TempDir(), "tree")
				err := buildSmallTree(t.Context(), out, tt.files, 3, io.Discard)
				if tt.wantError {
					if err == nil {
						t.Fatal("no error")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				trees[i] = listTree(t, out)
			}
			if got := len(trees[0]); got != tt.files {
				t.Errorf("files = %d, want %d", got, tt.files)
			}
			if _, ok := trees[0][tt.deepest]; !ok {
				t.Errorf("no file %s", tt.deepest)
			}
			dirs := make(map[string]bool)
			for rel, b := range trees[0] {
				dirs[filepath.Dir(rel)] = true
				if len(b) > smallMaxSize {
					t.Errorf("%s has %d bytes, more than %d", rel, len(b), smallMaxSize)
				}
			}
			sameSeedSameTree(t, trees[0], trees[1])
			if len(dirs) != tt.wantDirs {
				t.Errorf("%d directories hold files, want %d", len(dirs), tt.wantDirs)
			}
		})
	}
}

// sameSeedSameTree fails unless two trees built from the same seed hold
// the same files with the same bytes.
func sameSeedSameTree(t *testing.T, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("two trees of the same seed hold %d and %d files", len(a), len(b))
	}
	for rel, data := range a {
		if !bytes.Equal(data, b[rel]) {
			t.Errorf("%s differs between two trees of the same seed", rel)
		}
	}
}
