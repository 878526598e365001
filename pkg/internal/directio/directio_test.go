package directio_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
)

func TestAlloc(t *testing.T) {
	for _, n := range []int{1, 100, directio.Align - 1, directio.Align, directio.Align + 1, 4 << 20, 4<<20 + 17} {
		b := directio.Alloc(n)
		if len(b) != n {
			t.Errorf("Alloc(%d): len %d", n, len(b))
		}
		if cap(b)%directio.Align != 0 || cap(b) < n {
			t.Errorf("Alloc(%d): cap %d is not a multiple of %d covering n", n, cap(b), directio.Align)
		}
		if addr := uintptr(unsafe.Pointer(unsafe.SliceData(b))); addr%directio.Align != 0 {
			t.Errorf("Alloc(%d): address %#x is not aligned", n, addr)
		}
	}
}

func TestAligned(t *testing.T) {
	buf := directio.Alloc(3 * directio.Align)
	tests := []struct {
		name string
		b    []byte
		off  int64
		want bool
	}{
		{"aligned", buf, 0, true},
		{"aligned at a later block", buf[:directio.Align], 8 * directio.Align, true},
		{"empty", buf[:0], 0, false},
		{"short length", buf[:directio.Align-1], 0, false},
		{"unaligned offset", buf, 512, false},
		{"unaligned address", buf[1 : 1+directio.Align], 0, false},
		{"unaligned heap slice", make([]byte, directio.Align+1)[1:], 0, false},
	}
	for _, tt := range tests {
		if got := directio.Aligned(tt.b, tt.off); got != tt.want {
			t.Errorf("%s: Aligned = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestWriteAt writes aligned and unaligned pieces into one file and checks
// the bytes; where the file system does direct I/O (not tmpfs, which keeps
// files in the page cache), the aligned piece must not have gone through
// the page cache.
func TestWriteAt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	const size = 64 * directio.Align
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	aligned := directio.Alloc(16 * directio.Align)
	for i := range aligned {
		aligned[i] = byte(i%251 + 1)
	}
	tail := bytes.Repeat([]byte{7}, directio.Align+100) // unaligned length
	writes := []struct {
		b   []byte
		off int64
	}{
		{aligned, 32 * directio.Align},
		{tail, size - int64(len(tail))},
		{aligned[:directio.Align], 3}, // unaligned offset
	}
	for _, w := range writes {
		if err := directio.WriteAt(path, w.b, w.off); err != nil {
			t.Fatalf("WriteAt(%d bytes at %d): %v", len(w.b), w.off, err)
		}
		copy(want[w.off:], w.b)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file content differs from what was written")
	}
}

func TestWriteAtBypassesPageCache(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skip("tmpfs keeps every file in the page cache")
	}
	path := filepath.Join(dir, "f")
	const size = 256 * directio.Align
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	b := directio.Alloc(size)
	for i := range b {
		b[i] = byte(i)
	}
	if err := directio.WriteAt(path, b, 0); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, path, size); n > 0 {
		t.Errorf("%d of %d pages written directly are in the page cache", n, size/directio.Align)
	}
}

// residentPages counts the pages of the file's first size bytes that are
// in the page cache (mincore on a mapping, which does not fault them in).
func residentPages(t *testing.T, path string, size int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestWriteFile writes files of several lengths from aligned and unaligned
// buffers and checks their bytes; where the file system does direct I/O,
// a large file from an aligned buffer must have gone around the page cache
// but for its unaligned tail.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	direct := fs.Type != unix.TMPFS_MAGIC
	aligned := directio.Alloc(1<<20 + 3*directio.Align)
	for i := range aligned {
		aligned[i] = byte(i%253 + 1)
	}
	tests := []struct {
		name   string
		b      []byte
		direct bool // written around the page cache where the file system allows it
		cached int  // pages it may then leave in the page cache (its tail)
	}{
		{"empty", aligned[:0], false, 0},
		{"small", aligned[:5000], false, 0},
		{"aligned length", aligned[:1<<20], true, 0},
		{"aligned with a tail", aligned[:1<<20+1234], true, 1},
		{"unaligned address", aligned[1 : 1+1<<20], false, 0},
	}
	for i, tt := range tests {
		path := filepath.Join(dir, fmt.Sprint(i))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		err = directio.WriteFile(f, tt.b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("%s: WriteFile: %v", tt.name, err)
		}
		if direct && tt.direct { // before reading it back, which would cache it
			if n := residentPages(t, path, len(tt.b)); n > tt.cached {
				t.Errorf("%s: %d pages of %d bytes are in the page cache, want at most %d", tt.name, n, len(tt.b), tt.cached)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tt.b) {
			t.Errorf("%s: the file holds %d bytes that differ from the %d written", tt.name, len(got), len(tt.b))
		}
	}
}
