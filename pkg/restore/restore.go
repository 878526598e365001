// Package restore writes a snapshot's chunks back to a target: a regular file
// or a block device (Volume), or a directory tree (Tree). A restore of one
// volume target runs in three steps, each idempotent so that redelivered
// work is harmless:
//
//  1. Prepare creates PATH.bulkpart-JOB beside a file target (or checks a
//     device is large enough) and sets its size, which leaves zero chunks as
//     holes in a new file. The partial file is created with O_EXCL and
//     O_NOFOLLOW and opened once: what a restore writes goes through that
//     descriptor, never through a name someone could swap for a symlink.
//     Partial files other jobs left beside the target (restores killed
//     before they could remove them) are removed.
//  2. WriteChunk fetches a chunk, checks it against its hash, and writes it
//     at its offset; chunks are written in parallel and in any order.
//     Given an aligned buffer (directio.Alloc) it writes around the page
//     cache (O_DIRECT): a restored volume is not read back, and a multi-GB
//     write through the cache costs a copy per byte, evicts what the host
//     had cached, and leaves Finish's fsync all of it to wait for.
//  3. Finish flushes the data to stable storage, gives a file the source
//     image's mode, and renames the partial file into place, so a target
//     path holds either nothing new or the whole restored volume.
//
// A process that did not prepare a target (another reader of the same
// host) opens it with OpenVolume, which checks that the partial file is one
// a restore made before it writes anything to it.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// ErrExists is returned when a target file exists and overwriting was not
// allowed.
var ErrExists = errors.New("restore: target exists (use --overwrite to replace it)")

// Target is where one volume restore writes.
type Target struct {
	// Path is the final path of the file or device.
	Path string
	// JobID names the job; it keeps partial files of different jobs apart.
	JobID string
	// Size is the volume's size.
	Size int64
	// Overwrite allows replacing an existing regular file.
	Overwrite bool
	// Keep names other restore jobs still running, whose partial files
	// Prepare leaves alone; those of any other job are debris.
	Keep []string
	// Mode, if set, is the mode (permission bits with setuid, setgid and
	// sticky) a file target gets when it is moved into place: the source
	// image's (manifest.Snapshot.FileMode). Unset, it keeps the partial
	// file's 0600. A device keeps its own.
	Mode *uint32
}

const partialTag = ".bulkpart-"

// partialName is the name of the partial file of a file target in its
// directory.
func (t Target) partialName() string { return filepath.Base(t.Path) + partialTag + t.JobID }

// Volume is a volume target opened for writing: the partial file of a file
// target (or the device), opened once. Its methods are safe for concurrent
// use.
type Volume struct {
	t      Target
	device bool
	dir    *os.File // the target's directory (file targets)
	f      *os.File // writes through the page cache
	direct *os.File // O_DIRECT writes of the same file; nil where refused

	mu     sync.Mutex
	closed bool
}

// Device reports whether the target is a block device, on which zero
// chunks must be written rather than left as holes.
func (v *Volume) Device() bool { return v.device }

// Prepare readies the target and returns it open. It never truncates data a
// previous Prepare of the same job left, so running it twice is safe.
func Prepare(t Target) (*Volume, error) {
	fi, err := os.Stat(t.Path)
	switch {
	case err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		return openDevice(t, true)
	case err == nil && fi.IsDir():
		return nil, fmt.Errorf("prepare %s: %w: the target is a directory; give a file path", t.Path, ErrNotFile)
	case err == nil && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("prepare %s: %w: the target is a %s", t.Path, ErrNotFile, fi.Mode().Type())
	case err == nil && !t.Overwrite:
		return nil, fmt.Errorf("prepare %s: %w", t.Path, ErrExists)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("prepare %s: %w", t.Path, err)
	}
	dirPath := filepath.Dir(t.Path)
	dir, err := os.Open(dirPath)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: directory %s does not exist: %w", t.Path, dirPath, err)
	}
	v := &Volume{t: t, dir: dir}
	if err := v.sweep(); err != nil {
		v.Close()
		return nil, err
	}
	if err := v.createPartial(); err != nil {
		v.Close()
		return nil, err
	}
	if err := v.f.Truncate(t.Size); err != nil {
		v.Close()
		return nil, fmt.Errorf("prepare %s: set size %d: %w", t.Path, t.Size, err)
	}
	return v, nil
}

// ErrNotFile is wrapped when a volume target is neither a regular file nor
// a block device.
var ErrNotFile = errors.New("restore: not a file or block device")

// OpenVolume opens a target that Prepare readied, in a process that did not
// prepare it. A partial file that is not one a restore made (a symlink, a
// hard link, another user's file) is refused, never written to.
func OpenVolume(t Target) (*Volume, error) {
	if fi, err := os.Stat(t.Path); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		return openDevice(t, false)
	}
	dir, err := os.Open(filepath.Dir(t.Path))
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", t.Path, err)
	}
	v := &Volume{t: t, dir: dir}
	fd, err := unix.Openat(int(dir.Fd()), t.partialName(), unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("restore %s: open partial file: %w", t.Path, err)
	}
	if err := v.adopt(fd); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func openDevice(t Target, checkSize bool) (*Volume, error) {
	f, err := os.OpenFile(t.Path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", t.Path, err)
	}
	v := &Volume{t: t, device: true, f: f}
	if checkSize {
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("prepare %s: size of device: %w", t.Path, err)
		}
		if size < t.Size {
			v.Close()
			return nil, fmt.Errorf("prepare %s: %w: the device holds %d bytes, the volume needs %d", t.Path, ErrNoRoom, size, t.Size)
		}
	}
	if d, err := os.OpenFile(t.Path, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		v.direct = d
	}
	return v, nil
}

// ErrNoRoom is wrapped when a device target is smaller than the volume.
var ErrNoRoom = errors.New("restore: target too small")

// sweep removes the partial files of this target that restores of other
// jobs (not in Keep) left: a restore killed before it could remove them
// leaves a file as large as the volume each time.
func (v *Volume) sweep() error {
	names, err := readDirNames(int(v.dir.Fd()))
	if err != nil {
		return fmt.Errorf("prepare %s: list %s: %w", v.t.Path, v.dir.Name(), err)
	}
	prefix := filepath.Base(v.t.Path) + partialTag
	for _, n := range names {
		job, ok := strings.CutPrefix(n, prefix)
		if !ok || job == v.t.JobID || slices.Contains(v.t.Keep, job) {
			continue
		}
		if st, ok, err := lstat(int(v.dir.Fd()), n); err != nil || !ok || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if err := unix.Unlinkat(int(v.dir.Fd()), n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("prepare %s: remove %s, left by an earlier restore: %w", v.t.Path, n, err)
		}
	}
	return nil
}

// createPartial creates the partial file, or reopens the one an earlier
// Prepare of the same job made; anything else under its name is removed
// and the file created afresh.
func (v *Volume) createPartial() error {
	dir, name := int(v.dir.Fd()), v.t.partialName()
	create := func() (int, error) {
		return unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	}
	fd, err := create()
	if errors.Is(err, unix.EEXIST) {
		if fd, err = unix.Openat(dir, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			if err = v.adopt(fd); err == nil {
				return nil
			}
		}
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("prepare %s: remove %s: %w", v.t.Path, name, err)
		}
		fd, err = create()
	}
	if err != nil {
		return fmt.Errorf("prepare %s: create %s: %w", v.t.Path, name, err)
	}
	return v.adopt(fd)
}

// adopt takes fd as the partial file after checking it is one a restore
// made, and opens the same file for direct writes.
func (v *Volume) adopt(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("restore %s: %w", v.t.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || st.Uid != uint32(os.Geteuid()) {
		unix.Close(fd)
		return fmt.Errorf("restore %s: %w: %s is not the partial file a restore created (mode %o, %d links, owner %d)",
			v.t.Path, ErrUnsafePath, v.t.partialName(), st.Mode, st.Nlink, st.Uid)
	}
	v.f = os.NewFile(uintptr(fd), filepath.Join(v.dir.Name(), v.t.partialName()))
	dfd, err := unix.Openat(int(v.dir.Fd()), v.t.partialName(), unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	if err != nil {
		return nil // no direct I/O here: every write goes through f
	}
	var dst unix.Stat_t
	if unix.Fstat(dfd, &dst) != nil || dst.Dev != st.Dev || dst.Ino != st.Ino {
		unix.Close(dfd) // swapped between the two opens: write through f only
		return nil
	}
	v.direct = os.NewFile(uintptr(dfd), v.f.Name())
	return nil
}

// Chunk is one chunk to write.
type Chunk struct {
	Offset, Length int64
	// ID is the chunk's hash; ignored for zero chunks.
	ID   chunk.ID
	Zero bool
}

// WriteChunk fetches c from repo (unless it is a zero chunk), checks it and
// writes it at its offset. buf is scratch space reused across calls; the
// possibly grown buffer is returned. A corrupt chunk is never written.
func (v *Volume) WriteChunk(ctx context.Context, repo *repository.Repository, c Chunk, buf []byte) ([]byte, error) {
	if c.Offset < 0 || c.Length < 0 || c.Length > v.t.Size || c.Offset > v.t.Size-c.Length {
		return buf, fmt.Errorf("restore %s: %w: chunk [%d,+%d) outside the volume's %d bytes", v.t.Path, ErrUnsafePath, c.Offset, c.Length, v.t.Size)
	}
	var data []byte
	if c.Zero {
		if cap(buf) < int(c.Length) {
			buf = make([]byte, c.Length)
		}
		data = buf[:c.Length]
		clear(data)
	} else {
		var err error
		if buf, err = repo.GetChunk(ctx, c.ID, buf[:0]); err != nil {
			return buf, fmt.Errorf("restore %s at %d: %w", v.t.Path, c.Offset, err)
		}
		data = buf
		if int64(len(data)) != c.Length {
			return buf, fmt.Errorf("restore %s at %d: chunk %s holds %d bytes, the manifest says %d", v.t.Path, c.Offset, c.ID, len(data), c.Length)
		}
	}
	if err := v.writeAt(data, c.Offset); err != nil {
		return buf, fmt.Errorf("restore %s: write at %d: %w", v.t.Path, c.Offset, err)
	}
	return buf, nil
}

// writeAt writes directly when b and off are aligned and the file system
// allows it, through the page cache otherwise.
func (v *Volume) writeAt(b []byte, off int64) error {
	if v.direct != nil && directio.Aligned(b, off) {
		_, err := v.direct.WriteAt(b, off)
		if !errors.Is(err, unix.EINVAL) { // EINVAL: no direct I/O on this file system
			return err
		}
	}
	_, err := v.f.WriteAt(b, off)
	return err
}

// Finish flushes the target and moves a partial file into place, then
// closes the volume. Finishing a target finished before (by another
// process, or a redelivered step) finds the work done and returns nil.
func (v *Volume) Finish() error {
	defer v.Close()
	if err := v.f.Sync(); err != nil {
		return fmt.Errorf("finish %s: %w", v.t.Path, err)
	}
	if v.device {
		return nil
	}
	if v.t.Mode != nil {
		if err := unix.Fchmod(int(v.f.Fd()), *v.t.Mode&0o7777); err != nil {
			return fmt.Errorf("finish %s: chmod: %w", v.t.Path, err)
		}
	}
	dir, name := int(v.dir.Fd()), filepath.Base(v.t.Path)
	// The name must still hold the file written through v: what is moved
	// into place is a name, and someone may have swapped it meanwhile.
	var st unix.Stat_t
	if err := unix.Fstat(int(v.f.Fd()), &st); err != nil {
		return fmt.Errorf("finish %s: %w", v.t.Path, err)
	}
	if now, ok, err := lstat(dir, v.t.partialName()); err != nil || !ok || now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("finish %s: %w: %s is no longer the file this restore wrote (%v)", v.t.Path, ErrUnsafePath, v.t.partialName(), err)
	}
	if _, ok, err := lstat(dir, name); err != nil {
		return fmt.Errorf("finish %s: %w", v.t.Path, err)
	} else if ok && !v.t.Overwrite {
		return fmt.Errorf("finish %s: %w", v.t.Path, ErrExists)
	}
	if err := unix.Renameat(dir, v.t.partialName(), dir, name); err != nil {
		return fmt.Errorf("finish %s: %w", v.t.Path, err)
	}
	if err := v.dir.Sync(); err != nil {
		return fmt.Errorf("finish %s: sync directory: %w", v.t.Path, err)
	}
	return nil
}

// Finish finishes a target in a process that holds it open no more (or
// never did): it opens it (OpenVolume) and finishes it, or finds it
// finished before.
func Finish(t Target) error {
	v, err := OpenVolume(t)
	if err != nil {
		if _, serr := os.Stat(t.Path + partialTag + t.JobID); errors.Is(serr, os.ErrNotExist) {
			if _, serr := os.Stat(t.Path); serr == nil {
				return nil // finished before
			}
			return fmt.Errorf("finish %s: partial file %s is missing", t.Path, t.partialName())
		}
		return err
	}
	return v.Finish()
}

// Close releases the volume's descriptors, leaving the partial file. It is
// safe to call more than once.
func (v *Volume) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	var errs []error
	for _, f := range []*os.File{v.direct, v.f, v.dir} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// Abort removes the partial file a failed or cancelled restore left. The
// volume, if open, must be closed first.
func Abort(t Target) error {
	if err := os.Remove(t.Path + partialTag + t.JobID); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("abort restore of %s: %w", t.Path, err)
	}
	return nil
}
