// Command manifestcost shows where an unchanged tree backup's coordinator
// memory and repository bytes go, phase by phase, as the coordinator runs
// them (docs/benchmarks.md, "Manifests at 100,000 files"):
//
//	manifestcost REPO SNAPSHOT_ID
//
// It loads the tree snapshot as the parent, decodes its entries again as
// a scan's batches would bring them, plans and builds the unchanged
// backup's manifest, splits it into sealed directory objects as the commit
// does, and prints the live heap each step adds (after a GC) and what it
// allocated; then, for comparison, how many bytes per entry the flat JSON
// manifest of versions 2 and 3 would spend on what. Run it with the services'
// GOGC (50) to compare with their peak RSS.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func total() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: manifestcost REPO SNAPSHOT_ID")
		os.Exit(2)
	}
	ctx := context.Background()
	st, err := storeurl.Open(ctx, os.Args[1], storeurl.Options{})
	check(err)
	repo, err := repository.Open(ctx, st, repository.OpenOptions{})
	check(err)
	id := os.Args[2]
	n := 0
	report := func(what string, liveAfter, liveBefore uint64, alloc uint64, t time.Duration) {
		live := int64(liveAfter) - int64(liveBefore) // negative when a step lets go of more than it keeps
		fmt.Printf("%-44s live %7.1f MiB (%5d B/entry)  allocated %7.1f MiB  %6.2fs\n", what,
			float64(live)/(1<<20), int(live)/max(n, 1), float64(alloc)/(1<<20), t.Seconds())
	}
	h0, a0, t0 := heap(), total(), time.Now()
	whole, err := repo.LoadSnapshot(ctx, id)
	check(err)
	n = len(whole.Files)
	h1, a1 := heap(), total()
	report("snapshot assembled whole (restore, diff)", h1, h0, a1-a0, time.Since(t0))

	// The scan's entries as the coordinator holds them: decoded from
	// ScanBatch JSON (no content).
	scan := make([]manifest.Entry, len(whole.Files))
	copy(scan, whole.Files)
	for i := range scan {
		scan[i].Content = nil
	}
	js, _ := json.Marshal(scan)
	// The same entries whole, for the comparison at the end: a constant
	// part of the heap, which the steps' differences do not see.
	files := whole.Files
	scan, whole = nil, nil
	jsLen := uint64(len(js))

	h1 = heap()
	a1, t0 = total(), time.Now()
	parent, listing, err := repo.LoadListing(ctx, id)
	check(err)
	h2, a2 := heap(), total()
	report("parent listing (as a backup reads it)", h2, h1, a2-a1, time.Since(t0))

	h2 = heap()
	a2, t0 = total(), time.Now()
	var entries []manifest.Entry
	check(json.Unmarshal(js, &entries))
	js = nil
	packed, err := plan.NewScan(entries, 1500) // about a scan batch's entries
	check(err)
	entries = nil
	h3, a3 := heap(), total()
	report("scan held packed (plan.Scan, from JSON)", h3+jsLen, h2, a3-a2, time.Since(t0))

	snap := &manifest.Snapshot{ID: "ffff", Time: time.Now(), Host: parent.Host, Path: parent.Path,
		Mode: manifest.ModeFiles, SourceKind: manifest.KindDir, ChunkSize: parent.ChunkSize, Hash: "sha256", Compression: "zstd", Level: "fastest"}
	sealer, err := chunk.NewSealer(chunk.LevelDefault) // the coordinator's, made once
	check(err)
	h3 = heap()
	a3, t0 = total(), time.Now()
	fp, err := plan.Files(packed, listing, nil, parent.ChunkSize)
	check(err)
	check(listing.Err())
	listing = nil // as the coordinator, which keeps only the plan
	h4, a4 := heap(), total()
	report("plan.Files (walking the listing, let go)", h4, h3, a4-a3, time.Since(t0))

	// The commit: the new snapshot built entry by entry into directory
	// objects, each named and sealed (what the coordinator's tree writer
	// does before it asks the store which exist).
	t0 = time.Now()
	var objects, objectBytes, rawBytes int
	sealed := make(map[chunk.ID]int)
	tw := manifest.NewTreeWriter(snap.ID, manifest.DefaultTreeOptions, func(raw []byte) (manifest.TreeRef, error) {
		id := chunk.Sum(raw)
		size, ok := sealed[id]
		if !ok {
			size = len(sealer.Seal(nil, id, raw))
			sealed[id] = size
			objects, objectBytes, rawBytes = objects+1, objectBytes+size, rawBytes+len(raw)
		}
		return manifest.TreeRef{ID: id.String(), StoredSize: int64(size)}, nil
	})
	check(fp.Build(snap, func(int) plan.Stored { panic("no packs") }, nil, func(e *manifest.Entry) error {
		return tw.Add(e.Path, snap.ToTreeEntry(*e))
	}))
	root, err := tw.Close()
	check(err)
	snap.Version, snap.Root = manifest.VersionTrees, &root
	chunks := len(snap.Chunks)
	snap.Chunks = nil
	data, err := manifest.EncodeStored(snap)
	check(err)
	a5 := total()
	h5 := heap()
	report("built into directory objects, sealed", h5, h4, a5-a4, time.Since(t0))
	fmt.Printf("\nentries %d, chunks %d; %d directory objects: %d bytes (%.1f/entry), sealed %d bytes (%.1f/entry); manifest %d bytes\n",
		n, chunks, objects, rawBytes, float64(rawBytes)/float64(n), objectBytes, float64(objectBytes)/float64(n), len(data))
	runtime.KeepAlive(fp)
	runtime.KeepAlive(sealed)

	fmt.Println("the same entries in the flat JSON of manifest versions 2 and 3, for comparison:")

	// What the JSON holds: the same entries with fields taken away.
	size := func(what string, files []manifest.Entry) {
		b, _ := json.Marshal(files)
		o := sealer.Seal(nil, chunk.Sum(b), b)
		fmt.Printf("  %-46s JSON %6.1f B/entry, sealed %5.1f B/entry\n", what, float64(len(b))/float64(n), float64(len(o))/float64(n))
	}
	size("entries as stored", files)
	strip := func(f func(*manifest.Entry)) []manifest.Entry {
		out := make([]manifest.Entry, len(files))
		copy(out, files)
		for i := range out {
			f(&out[i])
		}
		return out
	}
	size("without content extents", strip(func(e *manifest.Entry) { e.Content = nil }))
	size("without content, inode, nlink", strip(func(e *manifest.Entry) { e.Content, e.Inode, e.Links = nil, 0, 0 }))
	type pathOnly struct {
		Path string `json:"path"`
	}
	po := make([]pathOnly, len(files))
	for i := range files {
		po[i].Path = files[i].Path
	}
	b, _ := json.Marshal(po)
	o := sealer.Seal(nil, chunk.Sum(b), b)
	fmt.Printf("  %-46s JSON %6.1f B/entry, sealed %5.1f B/entry\n", "paths alone", float64(len(b))/float64(n), float64(len(o))/float64(n))
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
