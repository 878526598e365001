// Package directio writes file data around the page cache (O_DIRECT).
//
// A restore writes a whole volume once and does not read it back; through
// the page cache every byte is copied into memory the kernel must first
// find, then written back later, and the final fsync waits for all of it.
// Direct writes go from the caller's buffer to the disk. They need the
// buffer's address, the file offset and the length to be multiples of the
// device's logical block size; Align covers every common one.
package directio

import (
	"errors"
	"os"
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
