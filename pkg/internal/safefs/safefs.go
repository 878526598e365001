// Package safefs opens files under an os.Root without following a symlink
// in the last element of the name, which os.Root's OpenFile does not
// promise (it follows links that stay inside the root, even with
// O_NOFOLLOW).
package safefs

import (
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// Open opens name under r with openat(2) and O_NOFOLLOW: the directories on
// the way are resolved by r (so never outside it), the last element never
// through a symlink (the call fails with ELOOP instead). perm applies when
// flag creates the file.
func Open(r *os.Root, name string, flag int, perm uint32) (*os.File, error) {
	d, err := r.Open(path.Dir(name))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), path.Base(name), flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
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
