package source_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// writeFile writes size bytes of a position-dependent pattern to a new file.
func writeFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	path := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func openVolume(t *testing.T, path string) *source.Volume {
	t.Helper()
	v, err := source.OpenVolume(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestOpenVolumeRegularFile(t *testing.T) {
	t.Parallel()
	const size = 3*4096 + 123
	path, data := writeFile(t, size)
	v := openVolume(t, path)
	if v.Size() != size {
		t.Errorf("Size() = %d, want %d", v.Size(), size)
	}
	if v.Kind() != manifest.KindFile {
		t.Errorf("Kind() = %q, want %q", v.Kind(), manifest.KindFile)
	}
	if err := syscall.Chmod(path, 0o2640); err != nil {
		t.Fatal(err)
	}
	if m := openVolume(t, path).FileMode(); m == nil || *m != 0o2640 {
		t.Errorf("FileMode() = %v, want 02640", m)
	}
	for _, r := range []struct{ off, n int }{{0, 4096}, {4096, 4096}, {3 * 4096, 123}, {size - 1, 1}, {size, 0}, {5, 1000}} {
		buf := make([]byte, r.n)
		n, err := v.ReadAt(buf, int64(r.off))
		if err != nil || n != r.n {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d, nil", r.n, r.off, n, err, r.n)
			continue
		}
		if !bytes.Equal(buf, data[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d bytes at %d) returned the wrong bytes", r.n, r.off)
		}
	}
}

func TestOpenVolumeSymlink(t *testing.T) {
	t.Parallel()
	path, _ := writeFile(t, 8192)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	v := openVolume(t, link)
	if v.Size() != 8192 || v.Kind() != manifest.KindFile {
		t.Errorf("volume through a symlink: size %d, kind %q; want 8192, %q", v.Size(), v.Kind(), manifest.KindFile)
	}
}

func TestOpenVolumeRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
		errText string
	}{
		{name: "directory", path: dir, wantErr: source.ErrNotVolume, errText: "directory"},
		{name: "FIFO", path: fifo, wantErr: source.ErrNotVolume, errText: fifo},
		{name: "character device", path: os.DevNull, wantErr: source.ErrNotVolume, errText: os.DevNull},
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: fs.ErrNotExist, errText: "missing"},
		{name: "missing parent", path: filepath.Join(dir, "no", "such"), wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := source.OpenVolume(tt.path) // a FIFO must not block: it is never opened
			if err == nil {
				v.Close()
				t.Fatalf("OpenVolume(%s) succeeded, want %v", tt.path, tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("OpenVolume(%s) = %v, want %v", tt.path, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("OpenVolume(%s) error %q does not mention %q", tt.path, err, tt.errText)
			}
		})
	}
}

func TestReadAtPastSize(t *testing.T) {
	t.Parallel()
	path, _ := writeFile(t, 8192)
	v := openVolume(t, path)
	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"straddling the end", 8000, 4096},
		{"at the end", 8192, 1},
		{"beyond the end", 1 << 20, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := v.ReadAt(make([]byte, tt.n), tt.off)
			if err == nil {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, nil; want an error", tt.n, tt.off, n)
			}
			if !strings.Contains(err.Error(), "past the volume's size") || !strings.Contains(err.Error(), path) {
				t.Errorf("ReadAt error %q should name the file and say the read is past its size", err)
			}
		})
	}
}

func TestReadAtAfterTruncate(t *testing.T) {
	t.Parallel()
	path, _ := writeFile(t, 4*4096)
	v := openVolume(t, path)
	if err := os.Truncate(path, 4096+100); err != nil {
		t.Fatal(err)
	}
	if v.Size() != 4*4096 {
		t.Errorf("Size() after truncation = %d, want the size fixed at open, %d", v.Size(), 4*4096)
	}
	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"chunk straddling the new end", 4096, 4096},
		{"chunk past the new end", 2 * 4096, 4096},
		{"whole volume", 0, 4 * 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.ReadAt(make([]byte, tt.n), tt.off)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadAt(%d bytes at %d) = %v, want %v", tt.n, tt.off, err, io.ErrUnexpectedEOF)
			}
			if !strings.Contains(err.Error(), "shrank") || !strings.Contains(err.Error(), path) {
				t.Errorf("ReadAt error %q should name the file and say it shrank", err)
			}
		})
	}
	// What is still there reads fine.
	if _, err := v.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Errorf("ReadAt of the untouched first block: %v", err)
	}
}

func TestReadAtConcurrent(t *testing.T) {
	t.Parallel()
	const blocks = 64
	path, data := writeFile(t, blocks*4096)
	v := openVolume(t, path)
	var wg sync.WaitGroup
	for i := range blocks {
		wg.Go(func() {
			buf := make([]byte, 4096)
			off := int64(i) * 4096
			if _, err := v.ReadAt(buf, off); err != nil {
				t.Errorf("ReadAt block %d: %v", i, err)
				return
			}
			if !bytes.Equal(buf, data[off:off+4096]) {
				t.Errorf("ReadAt block %d returned the wrong bytes", i)
			}
		})
	}
	wg.Wait()
}
