// Package safefs opens files under an os.Root without following a symlink
// in the last element of the name, which os.Root's OpenFile does not
// promise (it follows links that stay inside the root, even with
// O_NOFOLLOW), and keeps the directories it went through open, so that a
// thousand files of one directory cost one directory lookup, not a
// thousand walks from the root.
package safefs

import (
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// maxOpenDirs bounds the directories a Dirs keeps open.
const maxOpenDirs = 256

// Dirs opens files under a root. It is not safe for concurrent use.
type Dirs struct {
	root *os.Root
	open map[string]*os.File
}

// NewDirs returns a Dirs opening under r. Close it to release the
// directories it holds open.
func NewDirs(r *os.Root) *Dirs { return &Dirs{root: r, open: make(map[string]*os.File)} }

// Dir returns a descriptor of the directory name (relative to the root),
// resolved by the root (so never outside it) and kept open.
func (d *Dirs) Dir(name string) (int, error) {
	if f, ok := d.open[name]; ok {
		return int(f.Fd()), nil
	}
	if len(d.open) >= maxOpenDirs {
		d.Close()
	}
	f, err := d.root.Open(name)
	if err != nil {
		return -1, err
	}
	d.open[name] = f
	return int(f.Fd()), nil
}

// Open opens name with openat(2) and O_NOFOLLOW in its directory (see
// Dir): the last element is never followed through a symlink (the call
// fails with ELOOP instead). perm applies when flag creates the file.
func (d *Dirs) Open(name string, flag int, perm uint32) (*os.File, error) {
	fd, err := d.OpenFD(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// OpenFD is Open returning the raw descriptor, for hot paths that only
// read, write and stat it; close it with unix.Close.
func (d *Dirs) OpenFD(name string, flag int, perm uint32) (int, error) {
	dir, err := d.Dir(path.Dir(name))
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(dir, path.Base(name), flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// Close closes the directories held open.
func (d *Dirs) Close() {
	for name, f := range d.open {
		f.Close()
		delete(d.open, name)
	}
}

// SetTimes sets the access and modification times of the open file f to
// mtime (nanoseconds since the Unix epoch), whatever its name now is.
func SetTimes(f *os.File, mtime int64) error {
	ts := unix.NsecToTimespec(mtime)
	if err := unix.UtimesNanoAt(int(f.Fd()), "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "utimensat", Path: f.Name(), Err: err}
	}
	return nil
}
