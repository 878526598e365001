package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// treeOptions describes a file tree.
type treeOptions struct {
	files int
	seed  int64
	roots []root
	log   io.Writer
}

// treeMix is how a tree's files divide between categories, by count, and
// the range of sizes taken from each: mostly small source files and
// documents, some libraries, compressed archives and logs, and a few large
// binaries, as in a developer's home or a build server's work directory.
var treeMix = [numCategories]struct {
	share            float64
	minSize, maxSize int64
}{
	catSource:     {0.60, 0, 1 << 20},
	catDoc:        {0.20, 0, 1 << 20},
	catLibrary:    {0.15, 0, 16 << 20},
	catCompressed: {0.03, 0, 4 << 20},
	catLog:        {0.0197, 0, 1 << 20},
	catBinary:     {0.0003, 1 << 20, 256 << 20},
}

// buildTree copies a selection of this machine's files to a new directory
// out (which must not exist), each at its original path below out, and
// generates logs for the rest of the count. It is built as out+".tmp" and
// renamed, so an existing out is always complete. A manifest of its files
// goes to out+".manifest".
func buildTree(ctx context.Context, out string, opts treeOptions) error {
	if opts.files < 1 {
		return fmt.Errorf("tree of %d files: want at least 1", opts.files)
	}
	if exists(out) {
		return fmt.Errorf("%s exists; remove it first", out)
	}
	tmp := out + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	sel := planTree(byCategory(scan(opts.roots, opts.seed)), opts)
	fmt.Fprintf(opts.log, "mkcorpus: copying %d files to %s\n", len(sel.files)+len(sel.gen), tmp)
	if err := stageFiles(ctx, tmp, sel, false); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := writeManifestFile(out+".manifest", &sel); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	sel.writeSummary(opts.log)
	fmt.Fprintf(opts.log, "mkcorpus: %s: %d directories\n", out, sel.dirs())
	return nil
}

// planTree chooses opts.files files by treeMix. What the machine lacks in
// a category is made up with more source files, libraries and documents
// (in that order), and, failing those, with generated logs of 4 to 64 KiB,
// which also stand in for the logs the machine does not have.
func planTree(pools [numCategories][]candidate, opts treeOptions) selection {
	var sel selection
	var next [numCategories]int // the first candidate of each pool not yet considered
	take := func(c category, n int) int {
		m := treeMix[c]
		added := 0
		for ; next[c] < len(pools[c]) && added < n; next[c]++ {
			if f := pools[c][next[c]]; f.size >= m.minSize && f.size <= m.maxSize {
				sel.addFile(f)
				added++
			}
		}
		return added
	}
	rng := rand.New(rand.NewPCG(uint64(opts.seed), 0x6c6f6773))
	logs := 0
	generateLogs := func(n int) int {
		for range n {
			size := int64(4096) << rng.IntN(4) // 4 KiB .. 64 KiB, small ones as often as large
			size = min(size+rng.Int64N(size), 64<<10)
			sel.addGenerated(generated{
				rel:  fmt.Sprintf("var/log/app/%s/%s-%05d.log", logHosts[logs%len(logHosts)], logServices[logs%len(logServices)], logs),
				size: size, cat: catLog, seed: splitmix(uint64(opts.seed) + uint64(logs)),
			})
			logs++
		}
		return n
	}
	taken := 0
	for c := range numCategories {
		want := min(max(int(float64(opts.files)*treeMix[c].share), 1), opts.files-taken)
		n := take(c, want)
		if c == catLog { // a machine has few logs; generated ones stand in
			n += generateLogs(want - n)
		}
		taken += n
	}
	for _, c := range []category{catSource, catLibrary, catDoc} {
		taken += take(c, opts.files-taken)
	}
	generateLogs(opts.files - taken)
	return sel
}
