package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// imageOptions describes an ext4 volume image.
type imageOptions struct {
	size           int64   // image bytes, a multiple of 4 KiB
	free           float64 // share of the file system left free
	incompressible float64 // share of the image in incompressible files
	seed           int64
	roots          []root
	log            io.Writer
}

// Shares of the compressible data (the image's data less the
// incompressible part). What the machine cannot supply goes to logs, which
// can always be generated.
var imageShares = [numCategories]float64{
	catBinary:  0.30,
	catLibrary: 0.22,
	catSource:  0.30,
	catDoc:     0.08,
}

// Pieces of generated files, and the largest real file taken: no single
// file should make up a large part of a category.
const (
	randomPiece = 16 << 20
	logPiece    = 8 << 20
)

// fsUUID is the file system's UUID and directory hash seed, fixed so that
// equal inputs give equal images.
const fsUUID = "6b756c6b-6265-6e63-6800-000000000001"

// buildImage writes an ext4 image of opts.size bytes to out: a file system
// made by mkfs.ext4 -d from a staging directory holding the selected files
// (hard links to this machine's files where possible, else copies) and the
// generated ones. The image is written in full, free blocks as zeros, so
// it reads like a block device, not a sparse file. A manifest of its files
// goes to out+".manifest".
func buildImage(ctx context.Context, out string, opts imageOptions) error {
	if opts.size%4096 != 0 || opts.size < 64<<20 {
		return fmt.Errorf("image size %d: want a multiple of 4 KiB, at least 64 MiB", opts.size)
	}
	for _, tool := range []string{"mkfs.ext4", "dumpe2fs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (Debian package e2fsprogs): %w", tool, err)
		}
	}
	stage, tmp := out+".stage", out+".tmp"
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	defer os.Remove(tmp)

	pools := byCategory(scan(opts.roots, opts.seed))

	// The data budget is what mkfs leaves free on an empty file system of
	// this size, less the share to stay free. The inode count and the
	// directories' blocks depend on the selection, so plan, probe with the
	// selection's inode count, and plan again with the exact budget.
	rough := int64(float64(opts.size) * (1 - opts.free - 0.06))
	sel := planImage(pools, opts, rough)
	inodes := inodeCount(sel)
	empty := stage + ".empty"
	if err := os.MkdirAll(empty, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	probe, err := mkfs(ctx, tmp, empty, opts.size, inodes)
	if err != nil {
		return err
	}
	budget := probe.freeBlocks*probe.blockSize - int64(float64(probe.blockCount*probe.blockSize)*opts.free)
	// Each directory takes a block at least; fewer files need fewer
	// directories, so settle the count over a few rounds.
	for range 3 {
		dirBlocks := int64(sel.dirs()) * 4096
		if budget-dirBlocks <= 0 {
			return fmt.Errorf("image size %d too small for %.0f%% free space", opts.size, opts.free*100)
		}
		sel = planImage(pools, opts, budget-dirBlocks)
	}

	fmt.Fprintf(opts.log, "mkcorpus: staging %d files in %s\n", len(sel.files)+len(sel.gen), stage)
	if err := stageFiles(ctx, stage, sel, true); err != nil {
		return err
	}
	fmt.Fprintf(opts.log, "mkcorpus: mkfs.ext4 -d %s (%d bytes)\n", stage, opts.size)
	st, err := mkfs(ctx, tmp, stage, opts.size, inodeCount(sel))
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "e2fsck", "-fn", tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("e2fsck -fn %s: %w\n%s", tmp, err, out)
	}
	if err := densify(tmp); err != nil {
		return err
	}
	if err := writeManifestFile(out+".manifest", &sel); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	sel.writeSummary(opts.log)
	fmt.Fprintf(opts.log, "mkcorpus: %s: ext4, %d blocks of %d bytes, %.1f%% free, %d of %d inodes used; incompressible files %.1f%% of the image\n",
		out, st.blockCount, st.blockSize, 100*float64(st.freeBlocks)/float64(st.blockCount),
		st.inodeCount-st.freeInodes, st.inodeCount, 100*float64(sel.bytes[catCompressed])/float64(opts.size))
	return nil
}

// planImage chooses the image's files for a data budget in bytes of
// blocks: the incompressible share first (the machine's compressed files,
// then random bytes), then each compressible category's share of the
// rest, then logs (real, then generated) for whatever is left.
func planImage(pools [numCategories][]candidate, opts imageOptions, budget int64) selection {
	var sel selection
	seed := uint64(opts.seed)
	incompressible := min(budget, int64(float64(opts.size)*opts.incompressible)) &^ 4095
	// The share counts file bytes: the blocks' slack is zeros.
	used := sel.takeBytes(pools[catCompressed], incompressible, max(incompressible/8, 4096))
	random := max(incompressible-sel.bytes[catCompressed], 0) &^ 4095
	sel.generate(catCompressed, random, randomPiece, seed, func(i int) string {
		return fmt.Sprintf("var/lib/blobstore/%02x/blob-%04d.bin", i%256, i)
	})
	rest := budget - used - random
	for _, c := range []category{catBinary, catLibrary, catSource, catDoc} {
		share := int64(float64(budget-used-random) * imageShares[c])
		rest -= sel.takeBytes(pools[c], share, max(share/8, 4096))
	}
	rest -= sel.takeBytes(pools[catLog], rest, max(rest/8, 4096))
	sel.generate(catLog, rest&^4095, logPiece, seed, func(i int) string {
		return fmt.Sprintf("var/log/app/%s.log.%d", logHosts[i%len(logHosts)], i/len(logHosts))
	})
	return sel
}

// inodeCount is a generous inode count for a selection: every file and
// directory, plus room for the file system's own and some slack.
func inodeCount(sel selection) int64 {
	n, _ := sel.totals()
	return int64(n+sel.dirs())*11/10 + 1024
}

// fsStats are the figures dumpe2fs reports of a file system.
type fsStats struct {
	blockCount, freeBlocks, blockSize, inodeCount, freeInodes int64
}

// mkfs makes an ext4 file system of size bytes in the file img (replacing
// it) with the contents of dir, and returns its statistics. Timestamps,
// UUID and hash seed are fixed, so equal inputs give equal images.
func mkfs(ctx context.Context, img, dir string, size, inodes int64) (fsStats, error) {
	if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fsStats{}, err
	}
	f, err := os.Create(img)
	if err != nil {
		return fsStats{}, err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fsStats{}, err
	}
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096", "-N", strconv.FormatInt(inodes, 10),
		"-L", "bulkbench", "-U", fsUUID, "-E", "root_owner=0:0,hash_seed="+fsUUID, "-d", dir, img)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1767225600") // 2026-01-01
	if out, err := cmd.CombinedOutput(); err != nil {
		return fsStats{}, fmt.Errorf("mkfs.ext4 -d %s %s: %w\n%s", dir, img, err, out)
	}
	out, err := exec.CommandContext(ctx, "dumpe2fs", "-h", img).Output()
	if err != nil {
		return fsStats{}, fmt.Errorf("dumpe2fs -h %s: %w", img, err)
	}
	var st fsStats
	fields := map[string]*int64{
		"Block count": &st.blockCount, "Free blocks": &st.freeBlocks, "Block size": &st.blockSize,
		"Inode count": &st.inodeCount, "Free inodes": &st.freeInodes,
	}
	for line := range strings.Lines(string(out)) {
		name, value, ok := strings.Cut(line, ":")
		if p := fields[name]; ok && p != nil {
			if *p, err = strconv.ParseInt(strings.TrimSpace(value), 10, 64); err != nil {
				return fsStats{}, fmt.Errorf("dumpe2fs %s: %q: %w", img, line, err)
			}
		}
	}
	if st.blockCount == 0 || st.blockSize == 0 {
		return fsStats{}, fmt.Errorf("dumpe2fs -h %s: no block count or size in its output", img)
	}
	return st, nil
}

// stageFiles lays out sel under dir: each file of this machine at its
// path, hard-linked when link is set and the file system allows (mkfs only
// reads them; it saves copying a gigabyte), else copied; generated files
// written.
func stageFiles(ctx context.Context, dir string, sel selection, link bool) error {
	for i, f := range sel.files {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		dst := filepath.Join(dir, relPath(f.path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if link && os.Link(f.path, dst) == nil {
			continue
		}
		if err := copyFile(f.path, dst); err != nil {
			return err
		}
	}
	for _, g := range sel.gen {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := g.write(dir); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies src to dst with its permission bits and modification
// time. A file that vanished or cannot be read since the scan becomes an
// empty file: the corpus keeps its shape and the caller need not rescan.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return os.WriteFile(dst, nil, 0o644)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return os.Chtimes(dst, info.ModTime(), info.ModTime())
}

// densify writes zeros into every hole of the file at path, so that it
// occupies its full size on disk and reads like a block device, whose free
// blocks are real blocks too.
func densify(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	const seekData, seekHole = 3, 4 // lseek SEEK_DATA, SEEK_HOLE (Linux)
	zeros := make([]byte, 1<<20)
	size := info.Size()
	for off := int64(0); off < size; {
		hole, err := f.Seek(off, seekHole)
		if err != nil || hole >= size {
			break
		}
		data, err := f.Seek(hole, seekData)
		if err != nil { // ENXIO: a hole up to the end
			data = size
		}
		for p := hole; p < data; {
			n := min(int64(len(zeros)), data-p)
			if _, err := f.WriteAt(zeros[:n], p); err != nil {
				return fmt.Errorf("densify %s: %w", path, err)
			}
			p += n
		}
		off = data
	}
	return f.Sync()
}

// writeManifestFile writes sel's manifest to path.
func writeManifestFile(path string, sel *selection) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = sel.writeManifest(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
