package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/safefs"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// ErrUnsafePath is wrapped when a manifest entry would be written outside
// the restore target or through a symlink.
var ErrUnsafePath = errors.New("restore: unsafe path")

// ErrNotDir is wrapped when a tree restore's target exists and is not a
// directory (a file, or a symlink, which a restore never follows).
var ErrNotDir = errors.New("restore: target is not a directory")

// Tree is the target of a files-mode restore: a directory. A tree restore
// runs in steps, each idempotent:
//
//  1. CreateEntries makes directories and, for each regular file, a partial
//     file of the right size beside its final name; it removes partial
//     files that earlier, interrupted restores left in those directories.
//  2. WriteExtents fetches one chunk, checks it, and writes its pieces into
//     the partial files.
//  3. SetMetadata sets each file's owner (as root), mode and times and
//     renames it into place; it creates symlinks.
//  4. MakeLinks creates hard links to files now in place.
//  5. SetDirs sets the directories' owner, mode and times, last, since
//     creating entries changes a directory's mtime, and flushes the
//     filesystem.
//
// Every path is checked before use: it must be a path in manifest form,
// relative and clean (manifest.CheckPath). Every directory on the way to an
// entry is opened relative to its parent, one level at a time, never
// through a symlink (safefs), so nothing is ever written outside Path or
// through a link, whatever the manifest says; and a tree thousands of
// levels deep costs one open per level, not a walk from the top per entry.
type Tree struct {
	Path  string
	JobID string
	// Overwrite allows replacing existing files and symlinks.
	Overwrite bool
	// Keep names other restore jobs still running, whose partial files
	// CreateEntries must leave alone; those of any other job are debris of
	// an interrupted restore, and removed.
	Keep []string
}

// partial returns the name a file named base is written under before it is
// moved into place: a hidden sibling, tagged with the job so Abort finds
// it.
func (t Tree) partial(base string) string {
	tag := t.tag()
	if len(base) > 200 { // keep within NAME_MAX (255)
		sum := sha256.Sum256([]byte(base))
		return tag + "-" + hex.EncodeToString(sum[:8])
	}
	return "." + base + tag
}

func (t Tree) tag() string {
	sum := sha256.Sum256([]byte(t.JobID))
	return ".bulkpart-" + hex.EncodeToString(sum[:4])
}

// partialName matches the partial files of any tree restore (see partial).
var partialName = regexp.MustCompile(`^(\..+\.bulkpart-[0-9a-f]{8}|\.bulkpart-[0-9a-f]{8}-[0-9a-f]{16})$`)

// target is the target opened for one step: every access goes through its
// directories, opened level by level.
type target struct {
	t    Tree
	dirs *safefs.Dirs
}

// open opens the target for one step. The target must be a real directory.
func (t Tree) open() (*target, error) {
	dirs, err := safefs.Open(t.Path, false)
	if errors.Is(err, safefs.ErrNotDir) {
		return nil, fmt.Errorf("%w: %s", ErrNotDir, t.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", t.Path, err)
	}
	return &target{t: t, dirs: dirs}, nil
}

// Close releases the step's directories and root.
func (tg *target) Close() error { return tg.dirs.Release() }

// checkPath checks an entry's path in manifest form and returns it as the
// operating system names it.
func checkPath(p string) (string, error) {
	if err := manifest.CheckPath(p); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnsafePath, err)
	}
	return manifest.OSPath(p), nil
}

// parent returns the directory holding the entry at p (a checked OS path)
// and the entry's name in it; with create, missing directories on the way
// are made (mode 0700 until SetDirs applies theirs).
func (tg *target) parent(p string, create bool) (int, string, error) {
	dir := path.Dir(p)
	var fd int
	var err error
	if create {
		fd, err = tg.dirs.MkdirAll(dir, 0o700)
	} else {
		fd, err = tg.dirs.Dir(dir)
	}
	if err != nil {
		return -1, "", tg.wayErr(p, err)
	}
	return fd, path.Base(p), nil
}

// wayErr describes a failure to open the directories leading to p.
func (tg *target) wayErr(p string, err error) error {
	var pe *os.PathError
	if errors.Is(err, safefs.ErrNotDir) && errors.As(err, &pe) {
		return fmt.Errorf("%w: %s lies under %s, which is a symlink or not a directory; refusing to write through it",
			ErrUnsafePath, p, pe.Path)
	}
	if errors.Is(err, safefs.ErrOutside) {
		return fmt.Errorf("%w: %s: %v", ErrUnsafePath, p, err)
	}
	return fmt.Errorf("restore %s: %w", tg.t.join(p), err)
}

func (t Tree) join(p string) string { return filepath.Join(t.Path, filepath.FromSlash(p)) }

// lstat describes the entry name in directory dir without following it;
// ok is false when there is none.
func lstat(dir int, name string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	return st, err == nil, err
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// CreateEntries creates the target directory if missing (its parent must
// exist), the directories among entries, and a partial file of the right
// size for each regular file. An existing file, symlink or special file
// where an entry goes is an error unless Overwrite; an existing directory is
// reused. Partial files that earlier restores left in the directories it
// creates entries in are removed.
func (t Tree) CreateEntries(entries []manifest.Entry) error {
	if err := os.Mkdir(t.Path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("restore: create target %s: %w", t.Path, err)
	}
	if fi, err := os.Lstat(t.Path); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: %s exists and is not a directory (nor is a symlink to one followed)", ErrNotDir, t.Path)
	}
	r, err := t.open()
	if err != nil {
		return err
	}
	defer r.Close()
	swept := make(map[string]bool)
	for _, e := range entries {
		p, err := checkPath(e.Path)
		if err != nil {
			return err
		}
		if e.Path == "." {
			continue
		}
		dir, name, err := r.parent(p, true)
		if err != nil {
			return err
		}
		if d := path.Dir(p); !swept[d] {
			swept[d] = true
			if err := t.sweep(dir, d); err != nil {
				return err
			}
		}
		switch e.Type {
		case manifest.TypeDir:
			err = t.makeDir(dir, name, p)
		case manifest.TypeFile:
			if err = t.checkFree(dir, name, p); err != nil || e.LinkTo != "" {
				break // a hard link is made in MakeLinks
			}
			err = t.createPartial(dir, name, p, e)
		case manifest.TypeSymlink:
			err = t.checkFree(dir, name, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sweep removes, from the directory dir (the target's directory rel),
// partial files that restores of other jobs left there, interrupted before
// they could move them into place or remove them. Only regular files named
// as partial files are, and not those of this job or of the jobs in Keep:
// those are work in progress.
func (t Tree) sweep(dir int, rel string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return fmt.Errorf("restore %s: list: %w", t.join(rel), err)
	}
	keep := []string{t.tag()}
	for _, id := range t.Keep {
		keep = append(keep, Tree{JobID: id}.tag())
	}
	for _, n := range names {
		if !partialName.MatchString(n) || slices.ContainsFunc(keep, func(tag string) bool { return strings.Contains(n, tag) }) {
			continue
		}
		if st, ok, err := lstat(dir, n); err != nil || !ok || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if err := unix.Unlinkat(dir, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("restore %s: remove a partial file an earlier restore left: %w", t.join(path.Join(rel, n)), err)
		}
	}
	return nil
}

// readDirNames lists the open directory dir from its start, through a
// duplicate of its descriptor (which shares the offset, hence the rewind).
func readDirNames(dir int) ([]string, error) {
	dup, err := unix.Dup(dir)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

// createPartial creates the partial file of e (named name in dir) and sets
// its size. A partial file left by an earlier run of the same step is
// reused only if it is one this restore made (see ownPartial); anything else
// found under its name (a symlink, a hard link to a file elsewhere, another
// user's file) is removed and the partial file created afresh, so nothing is
// ever written through it. Setting the size never drops data: a repeated
// step finds the size already set.
func (t Tree) createPartial(dir int, name, p string, e manifest.Entry) error {
	part := t.partial(name)
	fd, err := unix.Openat(dir, part, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if fd, err = unix.Openat(dir, part, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			if ownPartial(fd, e) != nil {
				unix.Close(fd)
				fd, err = -1, unix.EEXIST
			}
		}
		if err != nil {
			if err := unix.Unlinkat(dir, part, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("restore %s: remove stale %s: %w", t.join(p), part, err)
			}
			fd, err = unix.Openat(dir, part, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	err = unix.Ftruncate(fd, e.Size)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore %s: set size %d: %w", t.join(p), e.Size, err)
	}
	return nil
}

// openPartial opens the partial file of the entry at p (named name in
// dir), checking it is the one this restore made.
func (t Tree) openPartial(dir int, name, p string, e manifest.Entry, flag int) (*os.File, error) {
	fd, err := unix.Openat(dir, t.partial(name), flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore %s: open partial file: %w", t.join(p), err)
	}
	if err := ownPartial(fd, e); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	return os.NewFile(uintptr(fd), t.join(p)), nil
}

// ownPartial checks that fd can be a partial file this restore made: a
// regular file with a single link, owned by this process's user (or, once
// SetMetadata has given it away, by the entry's). A hard link to a file
// elsewhere or a file another user planted fails, and is never written to,
// chmod-ed or moved into place.
func ownPartial(fd int, e manifest.Entry) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || st.Uid != uint32(os.Geteuid()) && int(st.Uid) != e.UID {
		return fmt.Errorf("%w: %s is not the partial file this restore created (mode %o, %d links, owner %d)", ErrUnsafePath, manifest.Display(e.Path), st.Mode, st.Nlink, st.Uid)
	}
	return nil
}

// makeDir makes the directory name in dir, reusing one that is there.
func (t Tree) makeDir(dir int, name, p string) error {
	st, ok, err := lstat(dir, name)
	switch {
	case err != nil:
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	case ok && isDir(&st):
		return nil
	case ok && !t.Overwrite:
		return fmt.Errorf("restore %s: %w", t.join(p), ErrExists)
	case ok:
		if err := unix.Unlinkat(dir, name, 0); err != nil {
			return fmt.Errorf("restore %s: %w", t.join(p), err)
		}
	}
	if err := unix.Mkdirat(dir, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	return nil
}

// checkFree fails if something other than what Overwrite may replace is at
// name in dir: a directory never is replaced by a file.
func (t Tree) checkFree(dir int, name, p string) error {
	st, ok, err := lstat(dir, name)
	switch {
	case err != nil:
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	case !ok:
		return nil
	case isDir(&st):
		return fmt.Errorf("restore %s: a directory is in the way", t.join(p))
	case !t.Overwrite:
		return fmt.Errorf("restore %s: %w", t.join(p), ErrExists)
	}
	return nil
}

// WriteExtents fetches chunk id (Length raw bytes) from repo, checks it and
// writes each part into its partial file. buf is scratch space; the possibly
// grown buffer is returned. A corrupt chunk is never written. Zeros are not
// written (see writeSparse): a sparse file stays sparse.
func (t Tree) WriteExtents(ctx context.Context, repo *repository.Repository, id chunk.ID, length int64, parts []plan.Extent, buf []byte) ([]byte, error) {
	buf, err := repo.GetChunk(ctx, id, buf[:0])
	if err != nil {
		return buf, fmt.Errorf("restore to %s: %w", t.Path, err)
	}
	if int64(len(buf)) != length {
		return buf, fmt.Errorf("restore to %s: chunk %s holds %d bytes, the manifest says %d", t.Path, id, len(buf), length)
	}
	r, err := t.open()
	if err != nil {
		return buf, err
	}
	defer r.Close()
	for _, pt := range parts {
		if !manifest.InRange(pt.ChunkOffset, pt.Length, length) || pt.FileOffset < 0 || pt.FileOffset > math.MaxInt64-pt.Length {
			return buf, fmt.Errorf("%w: %s: piece [%d,+%d) outside chunk %s", ErrUnsafePath, manifest.Display(pt.Path), pt.ChunkOffset, pt.Length, id)
		}
		p, err := checkPath(pt.Path)
		if err != nil {
			return buf, err
		}
		dir, name, err := r.parent(p, false)
		if err != nil {
			return buf, err
		}
		f, err := t.openPartial(dir, name, p, manifest.Entry{Path: pt.Path, UID: -1}, unix.O_WRONLY)
		if err != nil {
			return buf, err
		}
		err = writeSparse(f, buf[pt.ChunkOffset:pt.ChunkOffset+pt.Length], pt.FileOffset)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return buf, fmt.Errorf("restore %s: write at %d: %w", t.join(p), pt.FileOffset, err)
		}
	}
	return buf, nil
}

// sparseBlock is the unit writeSparse leaves out when it is all zeros: a
// file system block.
const sparseBlock = 4096

// writeSparse writes b at off in f, leaving out the runs of zeros, cut at
// block boundaries of the file: every block of the file that b would fill
// with zeros only stays a hole. That is sound because the partial file was
// sized with ftruncate and only this job writes it, so whatever is not
// written reads as zeros; a file that was sparse when backed up is sparse
// again, not 4 KB become 2 MB on disk.
func writeSparse(f *os.File, b []byte, off int64) error {
	run := -1 // start in b of the data not yet written
	for i := 0; i < len(b); {
		end := min(len(b), i+sparseBlock-int((off+int64(i))%sparseBlock))
		if chunk.IsZero(b[i:end]) {
			if run >= 0 {
				if _, err := f.WriteAt(b[run:i], off+int64(run)); err != nil {
					return err
				}
				run = -1
			}
		} else if run < 0 {
			run = i
		}
		i = end
	}
	if run >= 0 {
		_, err := f.WriteAt(b[run:], off+int64(run))
		return err
	}
	return nil
}

// SetMetadata finishes regular files (owner when running as root, mode,
// times; then moves them into place) and creates symlinks. A file already
// moved into place by an earlier run of the same step is left alone.
func (t Tree) SetMetadata(entries []manifest.Entry) error {
	r, err := t.open()
	if err != nil {
		return err
	}
	defer r.Close()
	for _, e := range entries {
		p, err := checkPath(e.Path)
		if err != nil {
			return err
		}
		if e.Type != manifest.TypeSymlink && (e.Type != manifest.TypeFile || e.LinkTo != "") {
			continue
		}
		dir, name, err := r.parent(p, false)
		if err != nil {
			return err
		}
		if e.Type == manifest.TypeFile {
			err = t.finishFile(dir, name, p, e)
		} else {
			err = t.makeSymlink(dir, name, p, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (t Tree) finishFile(dir int, name, p string, e manifest.Entry) error {
	part := t.partial(name)
	if _, ok, err := lstat(dir, part); err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	} else if !ok {
		if _, ok, _ := lstat(dir, name); ok {
			return nil // moved into place before
		}
		return fmt.Errorf("restore %s: partial file is missing", t.join(p))
	}
	f, err := t.openPartial(dir, name, p, e, unix.O_RDONLY)
	if err != nil {
		return err
	}
	err = setOwnerMode(int(f.Fd()), e)
	if err == nil {
		err = safefs.SetTimes(f, e.MTime)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	if st, ok, err := lstat(dir, name); err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	} else if ok {
		if isDir(&st) {
			return fmt.Errorf("restore %s: a directory is in the way", t.join(p))
		}
		if !t.Overwrite {
			return fmt.Errorf("restore %s: %w", t.join(p), ErrExists)
		}
	}
	if err := unix.Renameat(dir, part, dir, name); err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	return nil
}

// setOwnerMode applies an entry's owner (only as root: others cannot give
// files away) and then its mode, setuid and setgid bits included (chown
// clears them, so the order matters).
func setOwnerMode(fd int, e manifest.Entry) error {
	if os.Geteuid() == 0 {
		if err := unix.Fchown(fd, e.UID, e.GID); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, e.Mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

func (t Tree) makeSymlink(dir int, name, p string, e manifest.Entry) error {
	target := manifest.OSTarget(e.Target)
	if got, err := readlinkat(dir, name); err == nil && got == target {
		return t.symlinkMetadata(dir, name, p, e) // made before
	}
	if err := t.checkFree(dir, name, p); err != nil {
		return err
	}
	if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	if err := unix.Symlinkat(target, dir, name); err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	return t.symlinkMetadata(dir, name, p, e)
}

func readlinkat(dir int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// symlinkMetadata sets a symlink's owner and times, not its target's.
func (t Tree) symlinkMetadata(dir int, name, p string, e manifest.Entry) error {
	if os.Geteuid() == 0 {
		if err := unix.Fchownat(dir, name, e.UID, e.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("restore %s: chown: %w", t.join(p), err)
		}
	}
	ts := unix.NsecToTimespec(e.MTime)
	if err := unix.UtimesNanoAt(dir, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore %s: set times: %w", t.join(p), err)
	}
	return nil
}

// MakeLinks creates the hard links among entries, to the file each names,
// which SetMetadata has moved into place.
func (t Tree) MakeLinks(entries []manifest.Entry) error {
	r, err := t.open()
	if err != nil {
		return err
	}
	defer r.Close()
	for _, e := range entries {
		if e.Type != manifest.TypeFile || e.LinkTo == "" {
			continue
		}
		p, err := checkPath(e.Path)
		if err != nil {
			return err
		}
		to, err := checkPath(e.LinkTo)
		if err != nil {
			return err
		}
		toDir, toName, err := r.parent(to, false)
		if err != nil {
			return err
		}
		dir, name, err := r.parent(p, false)
		if err != nil {
			return err
		}
		if same(dir, name, toDir, toName) {
			continue // made before
		}
		if err := t.checkFree(dir, name, p); err != nil {
			return err
		}
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("restore %s: %w", t.join(p), err)
		}
		if err := unix.Linkat(toDir, toName, dir, name, 0); err != nil {
			return fmt.Errorf("restore %s: hard link to %s: %w", t.join(p), manifest.Display(e.LinkTo), err)
		}
	}
	return nil
}

func same(dirA int, a string, dirB int, b string) bool {
	sa, okA, errA := lstat(dirA, a)
	sb, okB, errB := lstat(dirB, b)
	return errA == nil && errB == nil && okA && okB && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// SetDirs applies the directories' owner, mode and times, then flushes the
// target's filesystem: the restore is durable when it returns.
func (t Tree) SetDirs(entries []manifest.Entry) error {
	r, err := t.open()
	if err != nil {
		return err
	}
	defer r.Close()
	for _, e := range entries {
		if e.Type != manifest.TypeDir {
			continue
		}
		p, err := checkPath(e.Path)
		if err != nil {
			return err
		}
		// Opened without following a symlink: a real directory, and
		// everything below goes through its descriptor.
		fd, err := r.dirs.Dir(p)
		if err != nil {
			return r.wayErr(p, err)
		}
		if err := setOwnerMode(fd, e); err != nil {
			return fmt.Errorf("restore %s: %w", t.join(p), err)
		}
		ts := unix.NsecToTimespec(e.MTime)
		if err := unix.UtimesNanoAt(fd, "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("restore %s: set times: %w", t.join(p), err)
		}
	}
	if err := unix.Syncfs(r.dirs.Root()); err != nil {
		return fmt.Errorf("restore to %s: flush: %w", t.Path, err)
	}
	return nil
}

// Abort removes the partial files this job left under the target. Files
// already moved into place stay: they are whole.
func (t Tree) Abort() error {
	tag := t.tag()
	var errs []error
	err := filepath.WalkDir(t.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts hold nothing this job can have written
		}
		if !d.IsDir() && strings.Contains(d.Name(), tag) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return errors.Join(append(errs, err)...)
}
