// Package restore writes a snapshot's chunks back to a target: a regular file
// or a block device. A restore of one target runs in three steps, each
// idempotent so that redelivered work is harmless:
//
//  1. Prepare creates PATH.bulkpart-JOB beside a file target (or checks a
//     device is large enough) and sets its size, which leaves zero chunks as
//     holes in a new file.
//  2. WriteChunk fetches a chunk, checks it against its hash, and writes it
//     at its offset; chunks are written in parallel and in any order.
//     Given an aligned buffer (directio.Alloc) it writes around the page
//     cache (O_DIRECT): a restored volume is not read back, and a multi-GB
//     write through the cache costs a copy per byte, evicts what the host
//     had cached, and leaves Finish's fsync all of it to wait for.
//  3. Finish flushes the data to stable storage and renames the partial file
//     into place, so a target path holds either nothing new or the whole
//     restored volume.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// ErrExists is returned when a target file exists and overwriting was not
// allowed.
var ErrExists = errors.New("restore: target exists (use --overwrite to replace it)")

// Target is where one restore writes.
type Target struct {
	// Path is the final path of the file or device.
	Path string
	// JobID names the job; it keeps partial files of different jobs apart.
	JobID string
	// Size is the volume's size.
	Size int64
	// Overwrite allows replacing an existing regular file.
	Overwrite bool
}

// partialPath is where a file target is written before Finish renames it.
func (t Target) partialPath() string { return t.Path + ".bulkpart-" + t.JobID }

// IsDevice reports whether the target path is an existing block device.
func (t Target) IsDevice() bool {
	fi, err := os.Stat(t.Path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// writePath is the file chunks are written to.
func (t Target) writePath() string {
	if t.IsDevice() {
		return t.Path
	}
	return t.partialPath()
}

// Prepare readies the target and reports whether it is a block device (on
// which zero chunks must be written, not skipped). It never truncates data
// a previous Prepare of the same job left, so running it twice is safe.
func Prepare(t Target) (device bool, err error) {
	fi, err := os.Stat(t.Path)
	switch {
	case err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		f, err := os.OpenFile(t.Path, os.O_WRONLY, 0)
		if err != nil {
			return true, fmt.Errorf("prepare %s: %w", t.Path, err)
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return true, fmt.Errorf("prepare %s: size of device: %w", t.Path, err)
		}
		if size < t.Size {
			return true, fmt.Errorf("prepare %s: device holds %d bytes, the volume needs %d", t.Path, size, t.Size)
		}
		return true, nil
	case err == nil && fi.IsDir():
		return false, fmt.Errorf("prepare %s: target is a directory; give a file path", t.Path)
	case err == nil && !fi.Mode().IsRegular():
		return false, fmt.Errorf("prepare %s: target is a %s, not a file or block device", t.Path, fi.Mode().Type())
	case err == nil && !t.Overwrite:
		return false, fmt.Errorf("prepare %s: %w", t.Path, ErrExists)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return false, fmt.Errorf("prepare %s: %w", t.Path, err)
	}
	dir := filepath.Dir(t.Path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return false, fmt.Errorf("prepare %s: directory %s does not exist", t.Path, dir)
	}
	f, err := os.OpenFile(t.partialPath(), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("prepare %s: %w", t.Path, err)
	}
	defer f.Close()
	if err := f.Truncate(t.Size); err != nil {
		return false, fmt.Errorf("prepare %s: set size %d: %w", t.Path, t.Size, err)
	}
	return false, nil
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
func WriteChunk(ctx context.Context, repo *repository.Repository, t Target, c Chunk, buf []byte) ([]byte, error) {
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
			return buf, fmt.Errorf("restore %s at %d: %w", t.Path, c.Offset, err)
		}
		data = buf
		if int64(len(data)) != c.Length {
			return buf, fmt.Errorf("restore %s at %d: chunk %s holds %d bytes, the manifest says %d", t.Path, c.Offset, c.ID, len(data), c.Length)
		}
	}
	if err := directio.WriteAt(t.writePath(), data, c.Offset); err != nil {
		return buf, fmt.Errorf("restore %s: write at %d: %w", t.Path, c.Offset, err)
	}
	return buf, nil
}

// Finish flushes the target and moves a partial file into place. After a
// successful Finish a second call finds the work done and returns nil.
func Finish(t Target) error {
	if t.IsDevice() {
		return syncPath(t.Path, os.O_WRONLY)
	}
	part := t.partialPath()
	if _, err := os.Stat(part); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(t.Path); err == nil {
			return nil // finished before
		}
		return fmt.Errorf("finish %s: partial file %s is missing", t.Path, part)
	}
	if err := syncPath(part, os.O_WRONLY); err != nil {
		return err
	}
	if _, err := os.Stat(t.Path); err == nil && !t.Overwrite {
		return fmt.Errorf("finish %s: %w", t.Path, ErrExists)
	}
	if err := os.Rename(part, t.Path); err != nil {
		return fmt.Errorf("finish %s: %w", t.Path, err)
	}
	return syncPath(filepath.Dir(t.Path), os.O_RDONLY)
}

// Abort removes a partial file left by a failed or cancelled restore.
func Abort(t Target) error {
	if err := os.Remove(t.partialPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("abort restore of %s: %w", t.Path, err)
	}
	return nil
}

func syncPath(path string, flag int) error {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
