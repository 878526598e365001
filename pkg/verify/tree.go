package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// ErrDiffers is wrapped by every finding that the compared source differs
// from the snapshot (as opposed to the snapshot being damaged).
var ErrDiffers = errors.New("source differs from the snapshot")

// Difference is one way a compared directory tree differs from a
// files-mode snapshot: what differs at the entry Path (in manifest form,
// relative to the tree's root).
type Difference struct {
	Path string
	What string
}

func (d *Difference) Error() string { return manifest.Display(d.Path) + ": " + d.What }

// Unwrap makes a difference match ErrDiffers.
func (d *Difference) Unwrap() error { return ErrDiffers }

// part is the piece of a file's content that lies in one chunk.
type part struct {
	entry             int // index into snap.Files
	fileOff, chunkOff int64
	n                 int64
}

// tree checks a files-mode snapshot: every chunk read back and checked,
// and with opts.Compare, the directory there compared with it entry by
// entry, content included. A damaged chunk's finding names the files
// whose content lies in it.
func tree(ctx context.Context, repo *repository.Repository, snap *manifest.Snapshot, opts Options) (*Report, error) {
	root := opts.Compare
	if root != "" {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("verify: compare source: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("verify: compare source %s is not a directory; snapshot %s is a files-mode backup of one", root, snap.ID)
		}
	}
	parts := make([][]part, len(snap.Chunks))
	for i, e := range snap.Files {
		var off int64
		for _, x := range e.Content {
			parts[x.Chunk] = append(parts[x.Chunk], part{entry: i, fileOff: off, chunkOff: x.Offset, n: x.Length})
			off += x.Length
		}
	}
	rep := &Report{Chunks: len(snap.Chunks), Bytes: snap.Size}
	var (
		diffs []*Difference
		skip  map[int]bool // files whose content is not compared: missing, or of another type or size
	)
	if root != "" {
		diffs, skip = compareMetadata(snap, root, os.Geteuid() == 0)
	}

	var (
		mu        sync.Mutex
		findings  []*Finding
		differing = make(map[int]bool) // files found to differ in content
		stored    atomic.Int64
		compared  atomic.Int64
	)
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	indexes := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf, src []byte
			for i := range indexes {
				c := snap.Chunks[i]
				var err error
				if c.Zero {
					buf = grow(buf, c.Length)
					clear(buf)
				} else {
					var id chunk.ID
					if id, err = c.ID(); err == nil {
						buf, err = repo.GetChunk(ctx, id, buf[:0])
					}
					if err == nil && int64(len(buf)) != c.Length {
						err = fmt.Errorf("holds %d bytes, the manifest says %d", len(buf), c.Length)
					}
					stored.Add(1)
				}
				if err != nil {
					f := &Finding{Index: i, Hash: c.Hash, Err: err, Files: filesOf(snap, parts[i])}
					mu.Lock()
					findings = append(findings, f)
					mu.Unlock()
				} else if root != "" {
					for _, p := range parts[i] {
						e := snap.Files[p.entry]
						if skip[p.entry] || e.LinkTo != "" { // a hard link's content is its file's
							continue
						}
						var differs bool
						src, differs, err = compareContent(root, e, p, buf[p.chunkOff:p.chunkOff+p.n], src)
						switch {
						case err != nil || differs:
							mu.Lock()
							if !differing[p.entry] {
								differing[p.entry] = true
								what := fmt.Sprintf("content differs in bytes %d to %d", p.fileOff, p.fileOff+p.n-1)
								if err != nil {
									what = "content not read: " + err.Error()
								}
								diffs = append(diffs, &Difference{Path: e.Path, What: what})
							}
							mu.Unlock()
						default:
							compared.Add(p.n)
						}
					}
				}
				if opts.Progress != nil {
					opts.Progress(c.Length)
				}
			}
		})
	}
	for i := range snap.Chunks {
		select {
		case indexes <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(indexes)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.StoredChunks, rep.ComparedBytes = int(stored.Load()), compared.Load()
	slices.SortFunc(findings, func(a, b *Finding) int { return a.Index - b.Index })
	damagedFiles := make(map[int]bool)
	var errs []error
	for _, f := range findings {
		rep.Damaged = append(rep.Damaged, f.Index)
		for _, p := range parts[f.Index] {
			damagedFiles[p.entry] = true
		}
		errs = append(errs, f)
	}
	for i, e := range snap.Files {
		if damagedFiles[i] {
			rep.DamagedFiles = append(rep.DamagedFiles, e.Path)
		}
	}
	slices.SortStableFunc(diffs, func(a, b *Difference) int { return strings.Compare(a.Path, b.Path) })
	for _, d := range diffs {
		rep.Differences = append(rep.Differences, *d)
		errs = append(errs, d)
	}
	return rep, errors.Join(errs...)
}

// filesOf returns the paths of the files whose content lies in parts, in
// manifest order, each once.
func filesOf(snap *manifest.Snapshot, parts []part) []string {
	var out []string
	for i, p := range parts {
		if i == 0 || parts[i-1].entry != p.entry {
			out = append(out, snap.Files[p.entry].Path)
		}
	}
	return out
}

// osPath is where the entry at p (manifest form) lies under root.
func osPath(root, p string) string {
	return filepath.Join(root, filepath.FromSlash(manifest.OSPath(p)))
}

// compareContent compares the n bytes at p.fileOff of e's file under root
// with want; src is scratch space, returned possibly grown.
func compareContent(root string, e manifest.Entry, p part, want, src []byte) ([]byte, bool, error) {
	f, err := os.OpenFile(osPath(root, e.Path), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return src, false, err
	}
	defer f.Close()
	src = grow(src, p.n)
	n, err := f.ReadAt(src, p.fileOff)
	if err != nil && !errors.Is(err, io.EOF) {
		return src, false, err
	}
	return src, n != len(want) || !bytes.Equal(src[:n], want), nil
}

// compareMetadata compares every entry of snap with the one at its path
// under root: type, mode, size, modification time, symlink target, hard
// links, and owner when owners is set (only root restores them); then
// lists what the tree holds that the snapshot does not. It returns the
// differences and the files whose content cannot be compared.
func compareMetadata(snap *manifest.Snapshot, root string, owners bool) ([]*Difference, map[int]bool) {
	var diffs []*Difference
	differ := func(e manifest.Entry, format string, args ...any) {
		diffs = append(diffs, &Difference{Path: e.Path, What: fmt.Sprintf(format, args...)})
	}
	skip := make(map[int]bool)
	gone := make(map[string]bool) // directories missing or not directories: what they hold is not looked for
	inodes := make(map[string][2]uint64)
	known := make(map[string]bool, len(snap.Files))
	for i, e := range snap.Files {
		known[e.Path] = true
		if e.Path != "." && gone[manifest.Parent(e.Path)] {
			gone[e.Path], skip[i] = true, true
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(osPath(root, e.Path), &st); err != nil {
			gone[e.Path], skip[i] = true, true
			if errors.Is(err, unix.ENOENT) {
				differ(e, "missing")
			} else {
				differ(e, "not readable: %v", err)
			}
			continue
		}
		if got, want := typeOf(st.Mode), typeName(e); got != want && !(e.Type == manifest.TypeSpecial && e.Special == "" && special(got)) {
			gone[e.Path], skip[i] = true, true
			differ(e, "is a %s, the snapshot has a %s", got, want)
			continue
		}
		if e.Type != manifest.TypeSymlink && st.Mode&0o7777 != e.Mode {
			differ(e, "mode %04o, the snapshot has %04o", st.Mode&0o7777, e.Mode)
		}
		if e.Type == manifest.TypeFile && !e.Unread && st.Size != e.Size {
			skip[i] = true
			differ(e, "size %d, the snapshot has %d", st.Size, e.Size)
		}
		if e.Unread {
			skip[i] = true
		}
		if mtime := st.Mtim.Nano(); mtime != e.MTime {
			differ(e, "modified %s, the snapshot has %s", timeString(mtime), timeString(e.MTime))
		}
		if owners && (int(st.Uid) != e.UID || int(st.Gid) != e.GID) {
			differ(e, "owner %d:%d, the snapshot has %d:%d", st.Uid, st.Gid, e.UID, e.GID)
		}
		switch e.Type {
		case manifest.TypeSymlink:
			target, err := os.Readlink(osPath(root, e.Path))
			switch {
			case err != nil:
				differ(e, "symlink not readable: %v", err)
			case target != manifest.OSTarget(e.Target):
				differ(e, "symlink to %q, the snapshot has %q", target, manifest.OSTarget(e.Target))
			}
		case manifest.TypeFile:
			inodes[e.Path] = [2]uint64{st.Dev, st.Ino}
			if e.LinkTo != "" {
				if to, ok := inodes[e.LinkTo]; ok && to != [2]uint64{st.Dev, st.Ino} {
					differ(e, "not a hard link of %s, as in the snapshot", manifest.Display(e.LinkTo))
				}
			}
		}
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		mp := manifest.EncodePath(filepath.ToSlash(rel))
		if !known[mp] {
			diffs = append(diffs, &Difference{Path: mp, What: "not in the snapshot"})
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	return diffs, skip
}

// typeName names an entry's type as typeOf names the file found.
func typeName(e manifest.Entry) string {
	switch e.Type {
	case manifest.TypeFile:
		return "file"
	case manifest.TypeDir:
		return "directory"
	case manifest.TypeSymlink:
		return "symlink"
	}
	switch e.Special {
	case manifest.SpecialFIFO:
		return "FIFO"
	case manifest.SpecialSocket:
		return "socket"
	case manifest.SpecialChar:
		return "character device"
	case manifest.SpecialBlock:
		return "block device"
	}
	return "special file"
}

// special reports whether a type typeOf names is a special file's.
func special(typ string) bool { return typ != "file" && typ != "directory" && typ != "symlink" }

// typeOf names the type of a file's mode (st_mode).
func typeOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "special file"
}

func timeString(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
