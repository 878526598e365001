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
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/safefs"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// ErrUnsafePath is wrapped when a manifest entry would be written outside
// the restore target or through a symlink.
var ErrUnsafePath = errors.New("restore: unsafe path")

// Tree is the target of a files-mode restore: a directory. A tree restore
// runs in steps, each idempotent:
//
//  1. CreateEntries makes directories and, for each regular file, a partial
//     file of the right size beside its final name.
//  2. WriteExtents fetches one chunk, checks it, and writes its pieces into
//     the partial files.
//  3. SetMetadata sets each file's owner (as root), mode and times and
//     renames it into place; it creates symlinks.
//  4. MakeLinks creates hard links to files now in place.
//  5. SetDirs sets the directories' owner, mode and times, last, since
//     creating entries changes a directory's mtime, and flushes the
//     filesystem.
//
// Every path is checked before use: it must be relative and clean (as
// manifest.CheckPath), and no directory on the way to it inside the target
// may be a symlink, so nothing is ever written outside Path, whatever the
// manifest says. All access goes through an os.Root as well.
type Tree struct {
	Path  string
	JobID string
	// Overwrite allows replacing existing files and symlinks.
	Overwrite bool
}

// partial returns the name a file is written under before it is moved into
// place: a hidden sibling, tagged with the job so Abort finds it.
func (t Tree) partial(p string) string {
	dir, base := path.Split(p)
	tag := t.tag()
	if len(base) > 200 { // keep within NAME_MAX (255)
		sum := sha256.Sum256([]byte(base))
		return dir + tag + "-" + hex.EncodeToString(sum[:8])
	}
	return dir + "." + base + tag
}

func (t Tree) tag() string {
	sum := sha256.Sum256([]byte(t.JobID))
	return ".bulkpart-" + hex.EncodeToString(sum[:4])
}

// target is the target opened for one step: all access goes through its
// root, every entry's path is checked by its guard, and the directories the
// step touches stay open in dirs.
type target struct {
	*os.Root
	*guard
	dirs *safefs.Dirs
}

// open opens the target for one step.
func (t Tree) open() (*target, error) {
	r, err := os.OpenRoot(t.Path)
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", t.Path, err)
	}
	return &target{Root: r, guard: t.guard(r), dirs: safefs.NewDirs(r)}, nil
}

// Close releases the step's directories and root.
func (tg *target) Close() error {
	tg.dirs.Close()
	return tg.Root.Close()
}

// guard checks entry paths against the target: each safe by itself, and
// every directory leading to it either absent or a real directory.
type guard struct {
	root    *os.Root
	t       Tree
	checked map[string]bool // directories checked to be real ones
}

func (t Tree) guard(r *os.Root) *guard {
	return &guard{root: r, t: t, checked: map[string]bool{".": true}}
}

func (g *guard) check(p string) error {
	if err := manifest.CheckPath(p); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsafePath, err)
	}
	for _, dir := range ancestors(p) {
		if g.checked[dir] {
			continue
		}
		fi, err := g.root.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // created by MkdirAll as a real directory
		case err != nil:
			return fmt.Errorf("restore %s: %w", filepath.Join(g.t.Path, p), err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s lies under %s, a symlink; refusing to write through it", ErrUnsafePath, p, dir)
		case !fi.IsDir():
			return fmt.Errorf("%w: %s lies under %s, which is not a directory", ErrUnsafePath, p, dir)
		}
		g.checked[dir] = true
	}
	return nil
}

// ancestors returns the directories leading to p, outermost first, without
// ".".
func ancestors(p string) []string {
	var out []string
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		out = append(out, d)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// CreateEntries creates the target directory if missing (its parent must
// exist), the directories among entries, and a partial file of the right
// size for each regular file. An existing file, symlink or special file
// where an entry goes is an error unless Overwrite; an existing directory is
// reused.
func (t Tree) CreateEntries(entries []manifest.Entry) error {
	if err := os.Mkdir(t.Path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("restore: create target %s: %w", t.Path, err)
	}
	if fi, err := os.Lstat(t.Path); err != nil || !fi.IsDir() {
		return fmt.Errorf("restore: target %s is not a directory", t.Path)
	}
	r, err := t.open()
	if err != nil {
		return err
	}
	defer r.Close()
	made := map[string]bool{".": true} // directories known to exist
	for _, e := range entries {
		if err := r.check(e.Path); err != nil {
			return err
		}
		if e.Path == "." {
			continue
		}
		if dir := path.Dir(e.Path); !made[dir] {
			if err := r.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
			}
			made[dir] = true
		}
		switch e.Type {
		case manifest.TypeDir:
			if err := t.makeDir(r, e.Path); err != nil {
				return err
			}
		case manifest.TypeFile:
			if err := t.checkFree(r, e.Path); err != nil {
				return err
			}
			if e.LinkTo != "" {
				continue // made in MakeLinks
			}
			f, err := t.createPartial(r, e)
			if err != nil {
				return err
			}
			// Setting the size never drops data: a repeated step finds the
			// size already set.
			err = f.Truncate(e.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("restore %s: set size %d: %w", t.join(e.Path), e.Size, err)
			}
		case manifest.TypeSymlink:
			if err := t.checkFree(r, e.Path); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t Tree) join(p string) string { return filepath.Join(t.Path, filepath.FromSlash(p)) }

// createPartial opens e's partial file for writing, creating it if needed.
// A partial file left by an earlier run of the same step is reused only if
// it is one this restore made (see ownPartial); anything else found under
// its name (a symlink, a hard link to a file elsewhere, another user's
// file) is removed and the partial file created afresh, so nothing is ever
// written through it.
func (t Tree) createPartial(r *target, e manifest.Entry) (*os.File, error) {
	part := t.partial(e.Path)
	f, err := r.dirs.Open(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f, nil // the usual case: a new file
	}
	if f, err = r.dirs.Open(part, os.O_WRONLY, 0); err == nil {
		if ownPartial(f, e) == nil {
			return f, nil
		}
		f.Close()
	}
	if err := r.Remove(part); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("restore %s: remove stale %s: %w", t.join(e.Path), part, err)
	}
	f, err = r.dirs.Open(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", t.join(e.Path), err)
	}
	return f, nil
}

// openPartial opens e's partial file, checking it is the one this restore
// made.
func (t Tree) openPartial(r *target, e manifest.Entry, flag int) (*os.File, error) {
	f, err := r.dirs.Open(t.partial(e.Path), flag, 0)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", t.join(e.Path), err)
	}
	if err := ownPartial(f, e); err != nil {
		f.Close()
		return nil, fmt.Errorf("restore %s: %w", t.join(e.Path), err)
	}
	return f, nil
}

// ownPartial checks that f can be a partial file this restore made: a
// regular file with a single link, owned by this process's user (or, once
// SetMetadata has given it away, by the entry's). A hard link to a file
// elsewhere or a file another user planted fails, and is never written to,
// chmod-ed or moved into place.
func ownPartial(f *os.File, e manifest.Entry) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || st.Uid != uint32(os.Geteuid()) && int(st.Uid) != e.UID {
		return fmt.Errorf("%w: %s is not the partial file this restore created (mode %o, %d links, owner %d)", ErrUnsafePath, f.Name(), st.Mode, st.Nlink, st.Uid)
	}
	return nil
}

func (t Tree) makeDir(r *target, p string) error {
	fi, err := r.Lstat(p)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil && !t.Overwrite:
		return fmt.Errorf("restore %s: %w", t.join(p), ErrExists)
	case err == nil:
		if err := r.Remove(p); err != nil {
			return fmt.Errorf("restore %s: %w", t.join(p), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	if err := r.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	return nil
}

// checkFree fails if something other than what Overwrite may replace is at
// p: a directory never is replaced by a file.
func (t Tree) checkFree(r *target, p string) error {
	fi, err := r.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	case fi.IsDir():
		return fmt.Errorf("restore %s: a directory is in the way", t.join(p))
	case !t.Overwrite:
		return fmt.Errorf("restore %s: %w", t.join(p), ErrExists)
	}
	return nil
}

// Part says where Length bytes at ChunkOffset of a chunk go: FileOffset of
// the file Path.
type Part struct {
	Path        string
	FileOffset  int64
	ChunkOffset int64
	Length      int64
}

// WriteExtents fetches chunk id (Length raw bytes) from repo, checks it and
// writes each part into its partial file. buf is scratch space; the possibly
// grown buffer is returned. A corrupt chunk is never written.
func (t Tree) WriteExtents(ctx context.Context, repo *repository.Repository, id chunk.ID, length int64, parts []Part, buf []byte) ([]byte, error) {
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
	for _, p := range parts {
		if !manifest.InRange(p.ChunkOffset, p.Length, length) || p.FileOffset < 0 || p.FileOffset > math.MaxInt64-p.Length {
			return buf, fmt.Errorf("restore %s: piece [%d,+%d) outside chunk %s", t.join(p.Path), p.ChunkOffset, p.Length, id)
		}
		if err := r.check(p.Path); err != nil {
			return buf, err
		}
		f, err := t.openPartial(r, manifest.Entry{Path: p.Path, UID: -1}, os.O_WRONLY)
		if err != nil {
			return buf, err
		}
		_, err = f.WriteAt(buf[p.ChunkOffset:p.ChunkOffset+p.Length], p.FileOffset)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return buf, fmt.Errorf("restore %s: write at %d: %w", t.join(p.Path), p.FileOffset, err)
		}
	}
	return buf, nil
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
		if err := r.check(e.Path); err != nil {
			return err
		}
		switch {
		case e.Type == manifest.TypeFile && e.LinkTo == "":
			err = t.finishFile(r, e)
		case e.Type == manifest.TypeSymlink:
			err = t.makeSymlink(r, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (t Tree) finishFile(r *target, e manifest.Entry) error {
	part := t.partial(e.Path)
	if _, err := r.Lstat(part); errors.Is(err, fs.ErrNotExist) {
		if _, err := r.Lstat(e.Path); err == nil {
			return nil // moved into place before
		}
		return fmt.Errorf("restore %s: partial file is missing", t.join(e.Path))
	}
	f, err := t.openPartial(r, e, os.O_RDONLY)
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
		return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
	}
	if fi, err := r.Lstat(e.Path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("restore %s: a directory is in the way", t.join(e.Path))
		}
		if !t.Overwrite {
			return fmt.Errorf("restore %s: %w", t.join(e.Path), ErrExists)
		}
	}
	if err := r.Rename(part, e.Path); err != nil {
		return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
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

func (t Tree) makeSymlink(r *target, e manifest.Entry) error {
	if target, err := r.Readlink(e.Path); err == nil && target == e.Target {
		return t.symlinkMetadata(r, e) // made before
	}
	if err := t.checkFree(r, e.Path); err != nil {
		return err
	}
	if err := r.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
	}
	if err := r.Symlink(e.Target, e.Path); err != nil {
		return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
	}
	return t.symlinkMetadata(r, e)
}

// symlinkMetadata sets a symlink's owner and times, not its target's.
func (t Tree) symlinkMetadata(r *target, e manifest.Entry) error {
	if os.Geteuid() == 0 {
		if err := r.Lchown(e.Path, e.UID, e.GID); err != nil {
			return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
		}
	}
	return t.utimesNoFollow(r, e.Path, e.MTime)
}

// utimesNoFollow sets p's times without following it if it is a symlink.
func (t Tree) utimesNoFollow(r *target, p string, mtime int64) error {
	d, err := r.Open(path.Dir(p))
	if err != nil {
		return fmt.Errorf("restore %s: %w", t.join(p), err)
	}
	defer d.Close()
	ts := unix.NsecToTimespec(mtime)
	if err := unix.UtimesNanoAt(int(d.Fd()), path.Base(p), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
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
		if err := r.check(e.Path); err != nil {
			return err
		}
		if err := r.check(e.LinkTo); err != nil {
			return err
		}
		if same(r, e.Path, e.LinkTo) {
			continue // made before
		}
		if err := t.checkFree(r, e.Path); err != nil {
			return err
		}
		if err := r.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
		}
		if err := r.Link(e.LinkTo, e.Path); err != nil {
			return fmt.Errorf("restore %s: hard link to %s: %w", t.join(e.Path), e.LinkTo, err)
		}
	}
	return nil
}

func same(r *target, a, b string) bool {
	fa, err := r.Lstat(a)
	if err != nil {
		return false
	}
	fb, err := r.Lstat(b)
	return err == nil && os.SameFile(fa, fb)
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
		if err := r.check(e.Path); err != nil {
			return err
		}
		// Opened without following a symlink: a real directory, and
		// everything below goes through its descriptor.
		d, err := r.dirs.Open(e.Path, os.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
		}
		err = setOwnerMode(int(d.Fd()), e)
		if err == nil {
			err = safefs.SetTimes(d, e.MTime)
		}
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", t.join(e.Path), err)
		}
	}
	d, err := r.Open(".")
	if err != nil {
		return fmt.Errorf("restore to %s: %w", t.Path, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
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
