// Package safefs works on the files under a directory (a restore target, a
// tree being backed up) one directory level at a time: every directory on
// the way to a name is opened relative to its parent's descriptor, without
// following a symlink, so nothing is ever reached through a symlink or
// outside the root, whatever the names say or whoever swaps a directory for
// a link meanwhile. The directories it went through stay open, so a
// thousand files of one directory cost one lookup, and a tree thousands of
// levels deep costs one open per level, not a walk from the root for every
// entry.
package safefs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxOpenDirs bounds the directories one Dirs keeps open: a share of the
// process's descriptor limit, as several may work at once.
var maxOpenDirs = func() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 256
	}
	return int(min(max(lim.Cur/16, 64), 4096))
}()

// ErrNotDir is wrapped when a directory on the way to a name is a symlink,
// a file, or anything but a real directory.
var ErrNotDir = errors.New("not a real directory")

// ErrOutside is wrapped when a name is absolute, not clean, or has a ".."
// element: it could lead outside the root.
var ErrOutside = errors.New("name leads outside the root")

// checkName returns an error unless name is relative, clean and free of
// ".." elements.
func checkName(name string) error {
	if name == "." {
		return nil
	}
	if name == "" || name[0] == '/' || path.Clean(name) != name || name == ".." ||
		strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
		return &os.PathError{Op: "open", Path: name, Err: ErrOutside}
	}
	return nil
}

// Dirs opens files under a root directory. It is not safe for concurrent
// use.
type Dirs struct {
	root *os.File
	open map[string]int // directory, relative to the root -> descriptor
}

// Open opens the directory at dir as a root. With follow, dir itself may be
// a symlink to the directory (a backup source named by a link); without,
// it must be a real directory. Close it to release what it holds open.
func Open(dir string, follow bool) (*Dirs, error) {
	flag := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flag |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(dir, flag, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			err = fmt.Errorf("%w (%w)", ErrNotDir, err)
		}
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Dirs{root: os.NewFile(uintptr(fd), dir), open: make(map[string]int)}, nil
}

// Root returns the root directory's descriptor.
func (d *Dirs) Root() int { return int(d.root.Fd()) }

// Name returns the root's path, as given to Open.
func (d *Dirs) Name() string { return d.root.Name() }

// Dir returns a descriptor of the directory name (relative to the root,
// slash-separated, clean; "." is the root), kept open. An element on the
// way that is not a real directory fails with an error wrapping ErrNotDir
// that names it; a missing one with an error wrapping fs.ErrNotExist.
func (d *Dirs) Dir(name string) (int, error) {
	return d.dir(name, false, 0)
}

// MkdirAll is Dir, creating with mode perm the directories that are
// missing. It returns the descriptor of name.
func (d *Dirs) MkdirAll(name string, perm uint32) (int, error) {
	return d.dir(name, true, perm)
}

func (d *Dirs) dir(name string, create bool, perm uint32) (int, error) {
	if name == "." {
		return d.Root(), nil
	}
	if err := checkName(name); err != nil {
		return -1, err
	}
	if fd, ok := d.open[name]; ok {
		return fd, nil
	}
	if len(d.open) >= maxOpenDirs+strings.Count(name, "/") {
		d.evict(name)
	}
	// Start from the deepest directory on the way that is open already.
	end, fd := len(name), -1
	for {
		i := strings.LastIndexByte(name[:end], '/')
		if i < 0 {
			end, fd = 0, d.Root()
			break
		}
		end = i
		if f, ok := d.open[name[:end]]; ok {
			fd = f
			break
		}
	}
	for end < len(name) {
		start := end
		if start > 0 {
			start++ // past the '/'
		}
		end = strings.IndexByte(name[start:], '/')
		if end < 0 {
			end = len(name)
		} else {
			end += start
		}
		at, elem := name[:end], name[start:end]
		child, err := unix.Openat(fd, elem, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, elem, perm); err == nil || errors.Is(err, unix.EEXIST) {
				child, err = unix.Openat(fd, elem, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				err = fmt.Errorf("%w (%w)", ErrNotDir, err)
			}
			return -1, &os.PathError{Op: "open", Path: at, Err: err}
		}
		// Every level of one descent stays open (a path has at most a few
		// thousand), so its siblings cost one open each; the bound applies
		// at the next call.
		d.open[at] = child
		fd = child
	}
	return fd, nil
}

// evict closes the open directories that do not lead to name, so a walk
// that goes on below name keeps the levels above it. A path's levels stay
// open even past maxOpenDirs: what is evicted is what was opened beside it,
// so each directory is opened about once however deep the tree.
func (d *Dirs) evict(name string) {
	for dir, fd := range d.open {
		if !strings.HasPrefix(name, dir) || len(name) > len(dir) && name[len(dir)] != '/' {
			unix.Close(fd)
			delete(d.open, dir)
		}
	}
}

// Parent returns the descriptor of name's directory and name's last
// element, to use with the *at system calls.
func (d *Dirs) Parent(name string) (int, string, error) {
	if err := checkName(name); err != nil || name == "." {
		return -1, "", cmpErr(err, &os.PathError{Op: "open", Path: name, Err: ErrOutside})
	}
	fd, err := d.Dir(path.Dir(name))
	if err != nil {
		return -1, "", err
	}
	return fd, path.Base(name), nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// Open opens name with openat(2) and O_NOFOLLOW in its directory: the last
// element is never followed through a symlink (the call fails with ELOOP
// instead). perm applies when flag creates the file.
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
	dir, base, err := d.Parent(name)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(dir, base, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// Close closes the directories held open, not the root: the Dirs stays
// usable. Release closes the root too.
func (d *Dirs) Close() {
	for name, fd := range d.open {
		unix.Close(fd)
		delete(d.open, name)
	}
}

// Release closes everything, the root included.
func (d *Dirs) Release() error {
	d.Close()
	return d.root.Close()
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
