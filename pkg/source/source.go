// Package source gives access to the data on a host: volumes to back up (a
// regular image file or a block device, read with ReadAt) and their size and
// kind, as a reader service needs them.
package source

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// ErrNotVolume is wrapped when a path is neither a regular file nor a block
// device (a directory, a FIFO, a socket...).
var ErrNotVolume = errors.New("not a volume: volume mode needs a regular file or a block device")

// Volume is an open volume. ReadAt is safe for concurrent use.
type Volume struct {
	f     *os.File
	size  int64
	kind  string
	mtime int64
	mode  *uint32
}

// OpenVolume opens path read-only and determines its size.
func OpenVolume(path string) (*Volume, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open volume: %w", err)
	}
	kind, err := volumeKind(path, fi)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open volume: %w", err)
	}
	size := fi.Size()
	if kind == manifest.KindDevice {
		// A block device reports size 0 in stat; its end is its size.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("open volume %s: size of device: %w", path, err)
		}
	}
	v := &Volume{f: f, size: size, kind: kind}
	if kind == manifest.KindFile {
		v.mtime = fi.ModTime().UnixNano()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			mode := st.Mode & 0o7777
			v.mode = &mode
		}
	}
	return v, nil
}

// FileMode returns an image file's permission bits (with setuid, setgid
// and sticky, as in chmod(2)) when it was opened; nil for a block device,
// whose restore target keeps its own.
func (v *Volume) FileMode() *uint32 { return v.mode }

// MTime returns an image file's modification time when it was opened, in
// nanoseconds since the epoch; 0 for a block device, whose node's time
// does not change as the device is written.
func (v *Volume) MTime() int64 { return v.mtime }

func volumeKind(path string, fi os.FileInfo) (string, error) {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return manifest.KindFile, nil
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return manifest.KindDevice, nil
	case m.IsDir():
		return "", fmt.Errorf("%s is a directory: %w", path, ErrNotVolume)
	default:
		return "", fmt.Errorf("%s (%s): %w", path, m.Type(), ErrNotVolume)
	}
}

// Size returns the volume's size in bytes, fixed when it was opened.
func (v *Volume) Size() int64 { return v.size }

// Kind returns manifest.KindFile or manifest.KindDevice.
func (v *Volume) Kind() string { return v.kind }

// ReadAt reads len(p) bytes at off. Reading past the size fixed at open is
// an error: the volume changed under us.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > v.size {
		return 0, fmt.Errorf("read %s at %d: %d bytes past the volume's size %d", v.f.Name(), off, off+int64(len(p))-v.size, v.size)
	}
	n, err := v.f.ReadAt(p, off)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("volume shrank while being read: %w", io.ErrUnexpectedEOF)
		}
		return n, fmt.Errorf("read %s at %d: %w", v.f.Name(), off, err)
	}
	return n, nil
}

// Close closes the volume.
func (v *Volume) Close() error { return v.f.Close() }
