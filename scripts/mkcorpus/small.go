package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// Shape of a tree of small files (mkcorpus tree -small): smallPerDir files
// to a directory, smallFanout directories to a directory above them, each
// file 0 to smallMaxSize bytes of generated log lines.
const (
	smallPerDir  = 100
	smallFanout  = 100
	smallMaxSize = 4 << 10
)

// buildSmallTree writes a tree of files small generated files to out
// (which must not exist), for the scale of a tree rather than its bytes:
// millions of files, a few KiB each. Directories are smallFanout wide and
// hold smallPerDir files each. The content and sizes depend only on seed.
// Like buildTree, it is built as out+".tmp" and renamed.
func buildSmallTree(ctx context.Context, out string, files int, seed int64, log io.Writer) error {
	if files < 1 {
		return fmt.Errorf("tree of %d files: want at least 1", files)
	}
	if exists(out) {
		return fmt.Errorf("%s exists; remove it first", out)
	}
	tmp := out + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	dirs := (files + smallPerDir - 1) / smallPerDir
	depth := smallDepth(dirs)
	fmt.Fprintf(log, "mkcorpus: writing %d small files in %d directories to %s\n", files, dirs, tmp)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		bytes    int64
	)
	next := make(chan int)
	for range runtime.NumCPU() {
		wg.Go(func() {
			var written int64
			for d := range next {
				n, err := writeSmallDir(tmp, smallDirPath(d, depth), d*smallPerDir, min(smallPerDir, files-d*smallPerDir), uint64(seed))
				written += n
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			bytes += written
			mu.Unlock()
		})
	}
feed:
	for d := range dirs {
		select {
		case next <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		os.RemoveAll(tmp)
		return firstErr
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(log, "mkcorpus: %s: %d files, %d bytes, %d leaf directories\n", out, files, bytes, dirs)
	return nil
}

// smallDirPath is the path of leaf directory d of a tree whose leaves are
// depth levels down: d's digits, in groups of two, name the directories
// (at depth 3, d 12345 is 01/23/45).
func smallDirPath(d, depth int) string {
	parts := make([]string, depth)
	for i := depth - 1; i >= 0; i-- {
		parts[i] = fmt.Sprintf("%02d", d%smallFanout)
		d /= smallFanout
	}
	return filepath.Join(parts...)
}

// smallDepth is how many levels down the leaves of a tree of dirs leaf
// directories are.
func smallDepth(dirs int) int {
	depth := 1
	for n := smallFanout; n < dirs; n *= smallFanout {
		depth++
	}
	return depth
}

// writeSmallDir writes leaf directory rel below root with n files, the
// first of them file number first of the tree, and returns the bytes
// written.
func writeSmallDir(root, rel string, first, n int, seed uint64) (int64, error) {
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	var total int64
	w := bufio.NewWriterSize(nil, smallMaxSize)
	for i := range n {
		fileSeed := splitmix(seed ^ uint64(first+i+1))
		size := int64(fileSeed % (smallMaxSize + 1))
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%03d.log", i)))
		if err != nil {
			return total, err
		}
		w.Reset(f)
		err = writeLog(w, size, fileSeed)
		if err == nil {
			err = w.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return total, fmt.Errorf("write %s: %w", f.Name(), err)
		}
		total += size
	}
	return total, nil
}
