// Package directio writes file data around the page cache (O_DIRECT).
//
// A restore writes a whole volume once and does not read it back, and a
// backup writes chunks into a directory repository that it does not read
// back either; through the page cache every byte is copied into memory the
// kernel must first find, then written back later, and the final fsync
// waits for all of it. Direct writes go from the caller's buffer to the
// disk. They need the buffer's address, the file offset and the length to
// be multiples of the device's logical block size; Align covers every
// common one.
package directio

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is the alignment of direct writes' buffers, offsets and lengths.
const Align = 4096

// Alloc returns a zeroed buffer of length n whose first byte is aligned to
// Align, with capacity rounded up to a multiple of Align.
func Alloc(n int) []byte {
	capacity := (n + Align - 1) / Align * Align
	raw := make([]byte, capacity+Align)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) % Align); r != 0 {
		skip = Align - r
	}
	return raw[skip : skip+n : skip+capacity]
}

// Aligned reports whether b can be written directly at offset off.
func Aligned(b []byte, off int64) bool {
	return len(b) > 0 && len(b)%Align == 0 && off%Align == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Align == 0
}

// WriteAt writes b at off in the file at path, directly when b and off are
// aligned and the file system allows it, through the page cache otherwise.
// The file must exist.
func WriteAt(path string, b []byte, off int64) error {
	if Aligned(b, off) {
		err := write(path, b, off, unix.O_DIRECT)
		if !errors.Is(err, unix.EINVAL) { // EINVAL: no direct I/O on this file system
			return err
		}
	}
	return write(path, b, off, 0)
}

func write(path string, b []byte, off int64, flag int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|flag, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// minDirectFile is the smallest file WriteFile writes directly: below it
// the page cache costs little, and the tail written through it would be
// most of the file.
const minDirectFile = 64 << 10

// WriteFile writes b at the start of the empty file f: the largest aligned
// prefix directly when b's address is aligned and the file system allows
// it, the rest (less than Align bytes) through the page cache. The caller
// still fsyncs f: direct writes skip the page cache, not the file system's
// metadata or the disk's cache.
func WriteFile(f *os.File, b []byte) error {
	n := len(b) / Align * Align
	if n >= minDirectFile && Aligned(b[:n], 0) {
		err := writeDirect(f, b[:n])
		if err == nil {
			_, err = f.WriteAt(b[n:], int64(n))
			return err
		}
		if !errors.Is(err, unix.EINVAL) { // EINVAL: no direct I/O on this file system
			return err
		}
	}
	_, err := f.WriteAt(b, 0)
	return err
}

// writeDirect writes b at offset 0 of f with O_DIRECT set on f for the
// duration of the write.
func writeDirect(f *os.File, b []byte) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if err := setDirect(conn, true); err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	return errors.Join(err, setDirect(conn, false))
}

// setDirect sets or clears O_DIRECT on an open file.
func setDirect(conn syscall.RawConn, on bool) error {
	var err error
	cerr := conn.Control(func(fd uintptr) {
		var flags int
		if flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil {
			return
		}
		if on {
			flags |= unix.O_DIRECT
		} else {
			flags &^= unix.O_DIRECT
		}
		_, err = unix.FcntlInt(fd, unix.F_SETFL, flags)
	})
	return errors.Join(cerr, err)
}
