package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/internal/safefs"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
)

// ScanTree walks the directory root in a fixed order (names sorted, each
// directory before what it holds) and calls emit with one entry per file,
// directory, symlink or special file, metadata filled in and no content.
// A regular file with more than one link that was seen before under another
// name gets LinkTo. Symlinks are recorded, never followed. What cannot be
// recorded faithfully is still reported: a directory that cannot be listed
// is emitted with a Warning, a special file with a Warning saying it is
// skipped. Names and symlink targets that are not UTF-8 text are kept in
// their encoded manifest form (manifest.EncodeName); warn is left for what
// cannot be recorded at all. ScanTreeWith leaves parts of the tree out.
func ScanTree(ctx context.Context, root string, emit func(manifest.Entry) error, warn func(string)) error {
	_, err := ScanTreeWith(ctx, root, ScanOptions{}, emit, warn)
	return err
}

// scan walks the tree at root.
func (s *scanner) scan(root string) error {
	dir, err := os.Open(root) // the root may be a symlink to the tree; nothing below is followed
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
		return fmt.Errorf("scan %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("scan %s: not a directory", root)
	}
	s.rootDev = st.Dev
	return s.dir(dir, root, ".", "", statOf(&st))
}

type scanner struct {
	ctx   context.Context
	emit  func(manifest.Entry) error
	warn  func(string)
	links map[[2]uint64]string // (device, inode) of multiply-linked files seen
	// What to leave out (select.go): the options, the (device, inode) of
	// SkipDirs, the root's device, and how many entries were left out.
	opts     ScanOptions
	skip     map[[2]uint64]bool
	rootDev  uint64
	excluded int
}

// dir emits the open directory dir and walks what it holds. Children are
// examined relative to dir's descriptor (fstatat, readlinkat, openat), which
// spares the kernel a path lookup from the root for every entry and never
// follows a symlink. raw is rel as the bytes of its names (not encoded),
// "" for the root, which exclude patterns are matched against.
func (s *scanner) dir(dir *os.File, abs, rel, raw string, st stat) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	e := entryOfStat(rel, st)
	names, err := dir.Readdirnames(-1)
	if err != nil {
		e.Warning = fmt.Sprintf("directory not listed: %v", err)
		return s.emit(e)
	}
	if err := s.emit(e); err != nil {
		return err
	}
	slices.Sort(names)
	fd := int(dir.Fd())
	selecting := s.selecting()
	if selecting {
		names = s.cacheNames(fd, names)
	}
	for _, name := range names {
		childRaw, v := name, keep
		if selecting {
			if raw != "" {
				childRaw = raw + "/" + name
			}
			if v = s.byPattern(childRaw); v == drop {
				s.excluded++
				continue // not even looked at
			}
		}
		// A name that is not UTF-8 text is kept, encoded (manifest.EncodeName).
		childAbs, childRel := filepath.Join(abs, name), path.Join(rel, manifest.EncodeName(name))
		if err := manifest.CheckPath(childRel); err != nil {
			s.warn(fmt.Sprintf("%s: skipped: %v", strconv.Quote(childAbs), err))
			continue
		}
		var ust unix.Stat_t
		err := unix.Fstatat(fd, name, &ust, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue // removed since the listing: it is not part of the tree any more
		}
		if err != nil {
			if err := s.unreadable(childRel, err); err != nil {
				return err
			}
			continue
		}
		cst := statOf(&ust)
		if selecting && s.leaveOut(childRaw, v, cst) {
			s.excluded++
			continue
		}
		if selecting && s.mountPoint(cst) {
			if err := s.emit(entryOfStat(childRel, cst)); err != nil { // the mount point, empty
				return err
			}
			continue
		}
		if cst.mode&unix.S_IFMT == unix.S_IFDIR {
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				ce := entryOfStat(childRel, cst)
				ce.Warning = fmt.Sprintf("directory not listed: open %s: %v", childAbs, err)
				if err := s.emit(ce); err != nil {
					return err
				}
				continue
			}
			child := os.NewFile(uintptr(cfd), childAbs)
			err = s.dir(child, childAbs, childRel, childRaw, cst)
			child.Close()
			if err != nil {
				return err
			}
			continue
		}
		if err := s.leaf(fd, name, childRel, cst); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) unreadable(rel string, err error) error {
	return s.emit(manifest.Entry{Path: rel, Type: manifest.TypeSpecial, Warning: fmt.Sprintf("not readable: %v", err)})
}

// leaf emits a file, symlink or special file of the directory dirFD.
func (s *scanner) leaf(dirFD int, name, rel string, st stat) error {
	e := entryOfStat(rel, st)
	switch {
	case e.Type == manifest.TypeSymlink:
		buf := make([]byte, max(st.size+1, 256))
		n, err := unix.Readlinkat(dirFD, name, buf)
		if err != nil || n == len(buf) {
			e.Type, e.Warning = manifest.TypeSpecial, fmt.Sprintf("symlink not readable: %v", err)
		} else {
			e.Target = manifest.EncodeTarget(string(buf[:n]))
		}
	case e.Type == manifest.TypeFile && e.Links > 1:
		key := [2]uint64{st.dev, st.ino}
		if first, ok := s.links[key]; ok {
			e.LinkTo = first
		} else {
			s.links[key] = rel
		}
	}
	return s.emit(e)
}

// stat is what a scan keeps of a file's status.
type stat struct {
	mode, uid, gid  uint32
	mtime           int64
	dev, ino, nlink uint64
	size            int64
}

func statOf(st *unix.Stat_t) stat {
	return stat{
		mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(),
		dev: st.Dev, ino: st.Ino, nlink: st.Nlink, size: st.Size,
	}
}

func entryOfStat(rel string, st stat) manifest.Entry {
	e := manifest.Entry{
		Path: rel, Mode: st.mode & 0o7777, UID: int(st.uid), GID: int(st.gid),
		MTime: st.mtime, Inode: st.ino, Links: st.nlink,
	}
	switch st.mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = manifest.TypeFile, st.size
	case unix.S_IFDIR:
		e.Type, e.Inode, e.Links = manifest.TypeDir, 0, 0
	case unix.S_IFLNK:
		e.Type, e.Inode, e.Links = manifest.TypeSymlink, 0, 0
	default:
		e.Type, e.Inode, e.Links, e.Special = manifest.TypeSpecial, 0, 0, specialKind(st.mode)
		e.Warning = fmt.Sprintf("%s skipped: only files, directories and symlinks are backed up", describeType(st.mode))
	}
	return e
}

// specialKind names the kind of a special file for its entry.
func specialKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return manifest.SpecialSocket
	case unix.S_IFIFO:
		return manifest.SpecialFIFO
	case unix.S_IFCHR:
		return manifest.SpecialChar
	case unix.S_IFBLK:
		return manifest.SpecialBlock
	}
	return ""
}

func describeType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "special file"
}

// FileProblem says why a file's piece in a pack is missing (Unread: its
// bytes are zeros) or suspect (it changed since the scan or while it was
// read: its bytes are what was read).
type FileProblem struct {
	Path   string
	Unread bool
	Err    string
}

// ReadPieces reads pieces of files under root into buf, one after another
// (len(buf) is the sum of their lengths). A file that cannot be opened or
// read leaves zeros and an Unread problem; a file whose size, mtime or inode
// differ from the scan, or change during the read, gives a problem but
// keeps what was read. Only a failure to open root itself is an error:
// then no piece can be read.
//
// A pack holds up to a thousand small files of a few directories, so each
// directory is opened once (safefs: level by level, never through a
// symlink, never outside root) and its files with openat(2), O_NOFOLLOW and
// raw descriptors: a handful of system calls per file.
func ReadPieces(root string, pieces []plan.Piece, buf []byte) ([]FileProblem, error) {
	dirs, err := safefs.Open(root, true)
	if err != nil {
		return nil, fmt.Errorf("open tree %s: %w", root, err)
	}
	defer dirs.Release()
	var problems []FileProblem
	var at int64
	for _, p := range pieces {
		slot := buf[at : at+p.Length]
		at += p.Length
		if problem := readPiece(dirs, p, slot); problem != nil {
			problems = append(problems, *problem)
		}
	}
	return problems, nil
}

func readPiece(dirs *safefs.Dirs, p plan.Piece, slot []byte) *FileProblem {
	unread := func(err error) *FileProblem {
		clear(slot)
		return &FileProblem{Path: p.Path, Unread: true, Err: fmt.Sprintf("not readable: %v", err)}
	}
	name := manifest.OSPath(p.Path)
	fd, err := dirs.OpenFD(name, unix.O_RDONLY|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership (or root)
		fd, err = dirs.OpenFD(name, unix.O_RDONLY, 0)
	}
	if err != nil {
		return unread(err)
	}
	defer unix.Close(fd)
	var before, after unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		return unread(err)
	}
	if before.Mode&unix.S_IFMT != unix.S_IFREG {
		return unread(fmt.Errorf("no longer a regular file (%s)", describeType(before.Mode)))
	}
	n, err := preadFull(fd, slot, p.Offset)
	if err != nil {
		return unread(&os.PathError{Op: "read", Path: p.Path, Err: err})
	}
	clear(slot[n:])
	if err := unix.Fstat(fd, &after); err != nil {
		return unread(err)
	}
	switch {
	case before.Size != p.Size || before.Mtim.Nano() != p.MTime || before.Ino != p.Inode:
		// A file saved by writing a new one and renaming it over the old
		// (most editors do) has a new inode: what is there now is read.
		return &FileProblem{Path: p.Path, Err: "changed since the scan (size, mtime or inode differ); content as read"}
	case after.Size != before.Size || after.Mtim.Nano() != before.Mtim.Nano():
		return &FileProblem{Path: p.Path, Err: "changed while being read; content as read"}
	case int64(n) < p.Length:
		return &FileProblem{Path: p.Path, Err: "shorter than scanned; content as read"}
	}
	return nil
}

// preadFull reads into b at off until b is full or the file ends.
func preadFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}
