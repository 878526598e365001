// Package verify proves a snapshot: every chunk it names is read back from
// the repository, decoded and checked against its hash, and, when a source
// is given, compared with it (the patent's verification: back up, read
// back, compare): a volume byte for byte, a directory tree entry by entry,
// metadata and content. Chunks are checked in parallel; every finding is
// reported, not only the first, and for a tree a damaged chunk names the
// files whose content lies in it.
package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// Options tunes Snapshot.
type Options struct {
	// Compare, if set, is the source to compare the snapshot with: for a
	// volume snapshot a volume whose bytes must equal it, for a files-mode
	// snapshot a directory whose entries must match it (type, mode, size,
	// modification time, symlink target, hard links, owner when running as
	// root, and content), and which must hold nothing else.
	Compare string
	// Workers is how many chunks are checked at once; 0 means one per CPU.
	Workers int
	// Progress, if set, is called after each chunk with the bytes checked.
	Progress func(bytes int64)
}

// Report summarises a verification.
type Report struct {
	Chunks        int   // chunks checked, zero chunks included
	StoredChunks  int   // distinct stored chunks read back
	Bytes         int64 // source bytes covered
	ComparedBytes int64 // bytes compared with the source and found equal (trees: file content)
	Damaged       []int // indexes of chunks that failed
	// DamagedFiles are the files (manifest-form paths, in manifest order)
	// of a files-mode snapshot whose content lies in a damaged chunk.
	DamagedFiles []string
	// Differences are how a compared tree differs from the snapshot,
	// ordered by path.
	Differences []Difference
}

// Finding is one problem with one chunk.
type Finding struct {
	Index  int
	Offset int64
	Hash   string
	Err    error
	// Files, for a files-mode snapshot, are the files (manifest-form
	// paths) whose content lies in the chunk.
	Files []string
}

func (f *Finding) Error() string {
	if f.Files != nil {
		return fmt.Sprintf("chunk %d (%s) of %s: %v", f.Index, f.Hash, filesPhrase(f.Files), f.Err)
	}
	if f.Hash == "" {
		return fmt.Sprintf("chunk %d at offset %d: %v", f.Index, f.Offset, f.Err)
	}
	return fmt.Sprintf("chunk %d at offset %d (%s): %v", f.Index, f.Offset, f.Hash, f.Err)
}

func (f *Finding) Unwrap() error { return f.Err }

// filesPhrase names up to three files: "a", "a and b", "a, b, c and 5
// more files".
func filesPhrase(files []string) string {
	const show = 3
	names := make([]string, 0, show)
	for _, p := range files[:min(len(files), show)] {
		names = append(names, manifest.Display(p))
	}
	switch {
	case len(files) > show:
		return fmt.Sprintf("%s and %d more files", strings.Join(names, ", "), len(files)-show)
	case len(names) > 1:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	case len(names) == 1:
		return names[0]
	}
	return "no file"
}

// Snapshot checks snap in repo. The error joins one *Finding per damaged
// chunk (or, for a volume, differing chunk) and, for a compared tree, one
// *Difference per difference; the report is complete either way. An error
// that is neither (the source cannot be opened, ctx ends) comes with a nil
// report, or a partial one when ctx ended.
func Snapshot(ctx context.Context, repo *repository.Repository, snap *manifest.Snapshot, opts Options) (*Report, error) {
	if snap.Mode == manifest.ModeFiles {
		return tree(ctx, repo, snap, opts)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var vol *source.Volume
	if opts.Compare != "" {
		var err error
		if vol, err = source.OpenVolume(opts.Compare); err != nil {
			return nil, fmt.Errorf("verify: compare source: %w", err)
		}
		defer vol.Close()
		if vol.Size() != snap.Size {
			return nil, fmt.Errorf("verify: source %s holds %d bytes, snapshot %s holds %d", opts.Compare, vol.Size(), snap.ID, snap.Size)
		}
	}

	rep := &Report{Chunks: len(snap.Chunks), Bytes: snap.Size}
	var (
		mu       sync.Mutex
		findings []error
		checked  = make(map[string]error) // hash -> result, so shared chunks are read once without --compare
		stored   atomic.Int64
		compared atomic.Int64
	)
	report := func(i int, c manifest.Chunk, err error) {
		mu.Lock()
		defer mu.Unlock()
		findings = append(findings, &Finding{Index: i, Offset: c.Offset, Hash: c.Hash, Err: err})
		rep.Damaged = append(rep.Damaged, i)
	}
	indexes := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf, src []byte
			for i := range indexes {
				c := snap.Chunks[i]
				var err error
				buf, src, err = checkChunk(ctx, repo, vol, c, buf, src, &mu, checked, &stored)
				if err != nil {
					report(i, c, err)
				} else if vol != nil {
					compared.Add(c.Length)
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
	slices.Sort(rep.Damaged)
	return rep, errors.Join(findings...)
}

func checkChunk(ctx context.Context, repo *repository.Repository, vol *source.Volume, c manifest.Chunk,
	buf, src []byte, mu *sync.Mutex, checked map[string]error, stored *atomic.Int64) ([]byte, []byte, error) {
	if c.Zero {
		if vol == nil {
			return buf, src, nil
		}
		src = grow(src, c.Length)
		if _, err := vol.ReadAt(src, c.Offset); err != nil {
			return buf, src, err
		}
		if !chunk.IsZero(src) {
			return buf, src, fmt.Errorf("%w: the snapshot has zeros here", ErrDiffers)
		}
		return buf, src, nil
	}
	if vol == nil {
		mu.Lock()
		err, seen := checked[c.Hash]
		mu.Unlock()
		if seen {
			return buf, src, err
		}
	}
	id, err := c.ID()
	if err != nil {
		return buf, src, err
	}
	buf, err = repo.GetChunk(ctx, id, buf[:0])
	if err == nil && int64(len(buf)) != c.Length {
		err = fmt.Errorf("holds %d bytes, the manifest says %d", len(buf), c.Length)
	}
	mu.Lock()
	if _, seen := checked[c.Hash]; !seen {
		checked[c.Hash] = err
		stored.Add(1)
	}
	mu.Unlock()
	if err != nil || vol == nil {
		return buf, src, err
	}
	src = grow(src, c.Length)
	if _, err := vol.ReadAt(src, c.Offset); err != nil {
		return buf, src, err
	}
	if !bytes.Equal(src, buf) {
		return buf, src, ErrDiffers
	}
	return buf, src, nil
}

func grow(b []byte, n int64) []byte {
	if int64(cap(b)) < n {
		return make([]byte, n)
	}
	return b[:n]
}
