package plan_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
)

func file(path string, size, mtime int64, inode uint64) manifest.Entry {
	return manifest.Entry{Path: path, Type: manifest.TypeFile, Mode: 0o644, Size: size, MTime: mtime, Inode: inode, Links: 1}
}

func dir(path string) manifest.Entry {
	return manifest.Entry{Path: path, Type: manifest.TypeDir, Mode: 0o755}
}

func hash(s string) string { return chunk.Sum([]byte(s)).String() }

// parentSnap is a parent snapshot of a tree with a.txt (10 bytes) and b.txt
// (20 bytes) packed in chunk 0, and big (5000 bytes) in chunks 0 and 1.
func parentSnap() *manifest.Snapshot {
	return &manifest.Snapshot{
		Version: 2, ID: "p", Mode: manifest.ModeFiles, ChunkSize: 4096, Hash: "sha256",
		Chunks: []manifest.Chunk{
			{Length: 4096, Hash: hash("c0"), StoredSize: 100},
			{Length: 934, Hash: hash("c1"), StoredSize: 50},
		},
		Files: []manifest.Entry{
			dir("."),
			withContent(file("a.txt", 10, 1, 11), manifest.Extent{Chunk: 0, Offset: 0, Length: 10}),
			withContent(file("b.txt", 20, 1, 12), manifest.Extent{Chunk: 0, Offset: 10, Length: 20}),
			withContent(file("big", 5000, 1, 13), manifest.Extent{Chunk: 0, Offset: 30, Length: 4066}, manifest.Extent{Chunk: 1, Offset: 0, Length: 934}),
		},
	}
}

func withContent(e manifest.Entry, x ...manifest.Extent) manifest.Entry {
	e.Content = x
	return e
}

func TestFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		scan     []manifest.Entry
		parent   *manifest.Snapshot
		unusable map[int]bool
		// want: new, changed, unchanged; the paths read, in order; bytes read
		wantCounts [3]int
		wantRead   []string
		wantBytes  int64
	}{
		{
			name:       "no parent: everything is new and read",
			scan:       []manifest.Entry{dir("."), file("a.txt", 10, 1, 11), file("b.txt", 20, 1, 12)},
			wantCounts: [3]int{2, 0, 0}, wantRead: []string{"a.txt", "b.txt"}, wantBytes: 30,
		},
		{
			name:       "unchanged files keep their content unread",
			scan:       []manifest.Entry{dir("."), file("a.txt", 10, 1, 11), file("b.txt", 20, 1, 12), file("big", 5000, 1, 13)},
			parent:     parentSnap(),
			wantCounts: [3]int{0, 0, 3}, wantRead: nil, wantBytes: 0,
		},
		{
			name:       "a new mtime, size or inode is a change",
			scan:       []manifest.Entry{dir("."), file("a.txt", 10, 2, 11), file("b.txt", 21, 1, 12), file("big", 5000, 1, 99)},
			parent:     parentSnap(),
			wantCounts: [3]int{0, 3, 0}, wantRead: []string{"a.txt", "b.txt", "big"}, wantBytes: 5031,
		},
		{
			name:       "a file whose content lies in an unusable chunk is read again",
			scan:       []manifest.Entry{dir("."), file("a.txt", 10, 1, 11), file("b.txt", 20, 1, 12), file("big", 5000, 1, 13)},
			parent:     parentSnap(),
			unusable:   map[int]bool{1: true},
			wantCounts: [3]int{0, 1, 2}, wantRead: []string{"big"}, wantBytes: 5000,
		},
		{
			name:       "hard links, empty files and directories are not read",
			scan:       []manifest.Entry{dir("."), dir("d"), file("d/empty", 0, 1, 20), file("x", 7, 1, 21), {Path: "y", Type: manifest.TypeFile, Size: 7, LinkTo: "x"}},
			wantCounts: [3]int{2, 0, 0}, wantRead: []string{"x"}, wantBytes: 7,
		},
		{
			name: "a file the parent could not read is read",
			scan: []manifest.Entry{dir("."), file("a.txt", 10, 1, 11)},
			parent: func() *manifest.Snapshot {
				p := parentSnap()
				p.Files[1].Unread, p.Files[1].Warning = true, "x"
				return p
			}(),
			wantCounts: [3]int{0, 1, 0}, wantRead: []string{"a.txt"}, wantBytes: 10,
		},
		{
			name: "files added, removed and changed, between a directory and its namesakes",
			scan: []manifest.Entry{dir("."), dir("a"), file("a/x", 4, 1, 2), file("a/y", 5, 1, 3), file("a-b", 6, 9, 4),
				file("b", 7, 1, 5), file("z", 8, 1, 6)},
			parent: &manifest.Snapshot{
				Version: 2, ID: "p2", Mode: manifest.ModeFiles, ChunkSize: 4096, Hash: "sha256",
				Chunks: []manifest.Chunk{{Length: 24, Hash: hash("c"), StoredSize: 30}},
				Files: []manifest.Entry{dir("."), dir("a"),
					withContent(file("a/w", 6, 1, 1), manifest.Extent{Chunk: 0, Offset: 0, Length: 6}),
					withContent(file("a/x", 4, 1, 2), manifest.Extent{Chunk: 0, Offset: 6, Length: 4}),
					withContent(file("a-b", 6, 1, 4), manifest.Extent{Chunk: 0, Offset: 10, Length: 6}),
					withContent(file("z", 8, 1, 6), manifest.Extent{Chunk: 0, Offset: 16, Length: 8}),
				},
			},
			wantCounts: [3]int{2, 1, 2}, wantRead: []string{"a/y", "a-b", "b"}, wantBytes: 18,
		},
	}
	for _, tt := range tests {
		// Each case twice: the parent held whole (a snapshot stored flat)
		// and as a backup holds a tree of directory objects.
		for _, form := range []string{"whole", "stored tree"} {
			t.Run(tt.name+"/"+form, func(t *testing.T) {
				var parent *manifest.Listing
				switch {
				case tt.parent != nil && form == "whole":
					parent = tt.parent.WholeListing()
				case tt.parent != nil:
					parent = storedListing(t, tt.parent)
				}
				checkFilesPlan(t, slices.Clone(tt.scan), parent, tt.unusable, tt.wantCounts, tt.wantRead, tt.wantBytes)
			})
		}
	}
}

// storedListing stores s as a tree of directory objects, in memory, and
// returns its listing as a backup loads it.
func storedListing(t *testing.T, s *manifest.Snapshot) *manifest.Listing {
	t.Helper()
	objects := make(map[string][]byte)
	stored, err := s.SplitTreesWith(manifest.TreeOptions{}, func(raw []byte) (manifest.TreeRef, error) {
		id := chunk.Sum(raw).String()
		objects[id] = raw
		return manifest.TreeRef{ID: id, StoredSize: int64(len(raw))}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := stored.LoadListing(func(refs []manifest.TreeRef) ([][]byte, error) {
		raws := make([][]byte, len(refs))
		for i, ref := range refs {
			raws[i] = objects[ref.ID]
		}
		return raws, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestFilesUntrustedParent: a parent's file is reused only when what its
// entry says of its content holds together, and only when found in walk
// order; anything else is read again rather than named wrongly.
func TestFilesUntrustedParent(t *testing.T) {
	t.Parallel()
	scan := []manifest.Entry{dir("."), file("a.txt", 10, 1, 11), file("b.txt", 20, 1, 12), file("big", 5000, 1, 13)}
	tests := []struct {
		name     string
		change   func(p *manifest.Snapshot)
		wantRead []string
	}{
		{"as stored", func(*manifest.Snapshot) {}, nil},
		{"extents short of the size", func(p *manifest.Snapshot) { p.Files[2].Content[0].Length = 19 }, []string{"b.txt"}},
		{"extents past the size", func(p *manifest.Snapshot) { p.Files[1].Size = 9; p.Files[1].Content[0].Length = 10 }, []string{"a.txt"}},
		{"an extent past its chunk's end", func(p *manifest.Snapshot) { p.Files[3].Content[1].Offset = 1 }, []string{"big"}},
		{"an extent at a negative offset", func(p *manifest.Snapshot) { p.Files[1].Content[0].Offset = -1 }, []string{"a.txt"}},
		{"out of walk order: found no more", func(p *manifest.Snapshot) { slices.Reverse(p.Files[1:]) }, []string{"a.txt", "b.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := parentSnap()
			tt.change(parent)
			fp := files(t, scan, parent.WholeListing(), nil)
			var read []string
			for _, i := range fp.Read {
				read = append(read, scan[i].Path)
			}
			if !slices.Equal(read, tt.wantRead) {
				t.Errorf("read %q, want %q", read, tt.wantRead)
			}
			// What is built of it is valid: reused extents hold each file.
			snap := &manifest.Snapshot{Version: 2, ID: "new", Mode: manifest.ModeFiles, ChunkSize: 4096, Hash: "sha256"}
			build(t, fp, snap, func(i int) plan.Stored {
				return plan.Stored{Hash: hash(fmt.Sprint("pack", i)), Length: 4096, StoredSize: 40, New: true}
			}, nil)
			if err := snap.Validate(); err != nil {
				t.Errorf("built: %v", err)
			}
		})
	}
}

// checkFilesPlan plans a backup of scan against parent and checks what is
// read and why.
func checkFilesPlan(t *testing.T, scan []manifest.Entry, parent *manifest.Listing, unusable map[int]bool, wantCounts [3]int, wantRead []string, wantBytes int64) {
	t.Helper()
	fp := files(t, scan, parent, unusable)
	if got := [3]int{fp.NewFiles, fp.Changed, fp.Unchanged}; got != wantCounts {
		t.Errorf("new, changed, unchanged = %v, want %v", got, wantCounts)
	}
	var read []string
	for _, i := range fp.Read {
		read = append(read, scan[i].Path)
	}
	if !slices.Equal(read, wantRead) || fp.ReadBytes != wantBytes {
		t.Errorf("read %q (%d bytes), want %q (%d)", read, fp.ReadBytes, wantRead, wantBytes)
	}
	var packed int64
	for i := range fp.Packs {
		pieces, err := fp.Pieces(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pieces {
			packed += p.Length
		}
	}
	if packed != wantBytes {
		t.Errorf("the packs' pieces hold %d bytes, want %d", packed, wantBytes)
	}
}

// files plans a backup of scan (held two entries a batch) against parent.
func files(t *testing.T, scan []manifest.Entry, parent *manifest.Listing, unusable map[int]bool) *plan.FilesPlan {
	t.Helper()
	s, err := plan.NewScan(scan, 2)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := plan.Files(s, parent, unusable, 4096)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// build builds the snapshot of fp, every pack stored as stored says,
// whole: its entries in Files.
func build(t *testing.T, fp *plan.FilesPlan, snap *manifest.Snapshot, stored func(int) plan.Stored, problems map[string]plan.Problem) {
	t.Helper()
	err := fp.Build(snap, stored, problems, func(e *manifest.Entry) error {
		snap.Files = append(snap.Files, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFilesBuild builds the manifest of an incremental backup from its plan
// and checks it: valid, unchanged files pointing at the parent's chunks
// (each once), read files at the new packs', problems recorded.
func TestFilesBuild(t *testing.T) {
	t.Parallel()
	scan := []manifest.Entry{
		dir("."), file("a.txt", 10, 1, 11), file("b.txt", 30, 2, 12), file("big", 5000, 1, 13),
		file("gone", 5, 1, 30), {Path: "hard", Type: manifest.TypeFile, Mode: 0o644, Size: 30, MTime: 2, Inode: 12, Links: 2, LinkTo: "b.txt"},
	}
	fp := files(t, scan, parentSnap().WholeListing(), nil)
	if len(fp.Packs) != 1 {
		t.Fatalf("%d packs, want 1 (b.txt and gone)", len(fp.Packs))
	}
	snap := &manifest.Snapshot{Version: 2, ID: "new", Mode: manifest.ModeFiles, ChunkSize: 4096, Hash: "sha256"}
	build(t, fp, snap, func(int) plan.Stored {
		return plan.Stored{Hash: hash("pack"), Length: 35, StoredSize: 40, New: true}
	}, map[string]plan.Problem{"gone": {Unread: true, Warning: "not readable: gone"}})
	snap.SetVersion()
	if err := snap.Validate(); err != nil {
		t.Fatalf("built manifest: %v", err)
	}
	st := snap.Stats
	if len(snap.Chunks) != 3 || st.NewChunks != 1 || st.StoredBytes != 190 || st.NewBytes != 40 {
		t.Errorf("chunks %d, stats %+v: want the new pack and the parent's two chunks once", len(snap.Chunks), st)
	}
	if st.Files != 5 || st.UnchangedFiles != 2 || st.ChangedFiles != 1 || st.NewFiles != 1 || st.Warnings != 1 {
		t.Errorf("file stats %+v", st)
	}
	var desc []string
	for _, e := range snap.Files {
		desc = append(desc, fmt.Sprintf("%s:%d:%v:%d", e.Path, len(e.Content), e.Unread, e.Size))
	}
	want := ".:0:false:0 a.txt:1:false:10 b.txt:1:false:30 big:2:false:5000 gone:0:true:5 hard:1:false:30"
	if got := strings.Join(desc, " "); got != want {
		t.Errorf("entries %s", got)
	}
	if snap.Size != 5040 {
		t.Errorf("size %d, want 5040 (a.txt, b.txt, big; not the unread file, the link once)", snap.Size)
	}
}

// batches returns every entry of a restore step's batches, in order.
func batches(t *testing.T, s *plan.RestoreStep) []manifest.Entry {
	t.Helper()
	var out []manifest.Entry
	for i := range s.Len() {
		b, err := s.Batch(i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestRestore(t *testing.T) {
	t.Parallel()
	p := parentSnap()
	p.Files = append(p.Files,
		manifest.Entry{Path: "hard", Type: manifest.TypeFile, Mode: 0o644, Size: 10, Inode: 11, Links: 2, LinkTo: "a.txt",
			Content: []manifest.Extent{{Chunk: 0, Offset: 0, Length: 10}}},
		manifest.Entry{Path: "link", Type: manifest.TypeSymlink, Mode: 0o777, Target: "a.txt"},
		manifest.Entry{Path: "sock", Type: manifest.TypeSpecial, Mode: 0o644, Warning: "socket skipped"},
		manifest.Entry{Path: "unread", Type: manifest.TypeFile, Mode: 0o644, Size: 3, Unread: true, Warning: "denied"},
	)
	p.Files[1].Links = 2 // a.txt, which hard names
	tests := []struct {
		name         string
		paths        []string
		zero         bool // chunk 1 is a zero chunk
		wantChunks   []string
		wantFiles    int
		wantBytes    int64
		wantLinks    []string // link entries and what they link to
		wantDirs     int
		wantWarnings int
		wantErr      string
	}{
		{
			name:       "the whole tree",
			wantChunks: []string{"c0", "c1"}, wantFiles: 4, wantBytes: 5030, wantLinks: []string{"hard=a.txt"}, wantDirs: 1, wantWarnings: 2,
		},
		{
			name: "a hard link without its first name is a file of its own", paths: []string{"hard"},
			wantChunks: []string{"c0"}, wantFiles: 1, wantBytes: 10, wantDirs: 0,
		},
		{
			name: "zero chunks are not written", paths: []string{"big"}, zero: true,
			wantChunks: []string{"c0"}, wantFiles: 1, wantBytes: 5000, wantDirs: 0,
		},
		{name: "a path that names nothing", paths: []string{"b.txt", "nope"}, wantErr: `path "nope" is not in snapshot p`},
	}
	for _, tt := range tests {
		for _, form := range []string{"whole", "stored tree"} {
			t.Run(tt.name+"/"+form, func(t *testing.T) {
				snap := p
				if tt.zero {
					s := *p
					s.Chunks = slices.Clone(p.Chunks)
					s.Chunks[1] = manifest.Chunk{Length: 934, Zero: true}
					snap = &s
				}
				listing := snap.WholeListing()
				if form != "whole" {
					listing = storedListing(t, snap)
				}
				rp, err := plan.Restore(snap, listing, tt.paths)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("Restore = %v, want an error mentioning %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var chunks []string
				var parts int64
				for i, w := range rp.Extents {
					chunks = append(chunks, rp.Chunks[w.Chunk].Hash)
					ps, err := rp.Parts(i)
					if err != nil {
						t.Fatal(err)
					}
					for _, x := range ps {
						parts += x.Length
					}
				}
				var want []string
				for _, c := range tt.wantChunks {
					want = append(want, hash(c))
				}
				if !slices.Equal(chunks, want) {
					t.Errorf("chunks written %v, want %v", chunks, want)
				}
				if rp.Files != tt.wantFiles || rp.Bytes != tt.wantBytes {
					t.Errorf("files %d, bytes %d; want %d, %d", rp.Files, rp.Bytes, tt.wantFiles, tt.wantBytes)
				}
				var links []string
				for _, e := range batches(t, &rp.Links) {
					links = append(links, e.Path+"="+e.LinkTo)
				}
				if !slices.Equal(links, tt.wantLinks) {
					t.Errorf("links %q, want %q", links, tt.wantLinks)
				}
				if dirs := len(batches(t, &rp.Dirs)); dirs != tt.wantDirs || len(rp.Warnings) != tt.wantWarnings {
					t.Errorf("dirs %d, warnings %q; want %d dirs, %d warnings", dirs, rp.Warnings, tt.wantDirs, tt.wantWarnings)
				}
				for _, s := range []*plan.RestoreStep{&rp.Create, &rp.Metadata, &rp.Links, &rp.Dirs} {
					for _, e := range batches(t, s) {
						if len(e.Content) > 0 {
							t.Errorf("%s: a step's entry carries content", e.Path)
						}
					}
				}
			})
		}
	}
}

// TestRestoreRefusesBadEntries: what an entry says of its content is
// checked as the plan walks it, the listing not being validated whole.
func TestRestoreRefusesBadEntries(t *testing.T) {
	t.Parallel()
	p := parentSnap()
	p.Files[2].Content[0].Length = 19 // b.txt: 19 bytes of extents for 20
	if _, err := plan.Restore(p, p.WholeListing(), nil); err == nil || !strings.Contains(err.Error(), "b.txt") {
		t.Errorf("Restore = %v, want b.txt refused", err)
	}
	// Not selected, not checked: a restore of a.txt alone goes on.
	if _, err := plan.Restore(p, p.WholeListing(), []string{"a.txt"}); err != nil {
		t.Errorf("restoring a.txt alone: %v", err)
	}
}

// TestRestoreBatches: steps are cut into batches of bounded count, and a
// chunk shared by more files than a work item may name is split.
func TestRestoreBatches(t *testing.T) {
	t.Parallel()
	const n = 3*plan.RestoreBatchEntries + 7
	snap := &manifest.Snapshot{Version: 2, ID: "b", Mode: manifest.ModeFiles, ChunkSize: 1 << 20, Hash: "sha256",
		Chunks: []manifest.Chunk{{Length: n, Hash: hash("tiny"), StoredSize: 9}}}
	snap.Files = append(snap.Files, dir("."))
	for i := range n {
		snap.Files = append(snap.Files, withContent(file(fmt.Sprintf("f%05d", i), 1, 1, uint64(i+1)), manifest.Extent{Chunk: 0, Offset: int64(i), Length: 1}))
	}
	rp, err := plan.Restore(snap, snap.WholeListing(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := rp.Create.Batch(0); rp.Create.Len() != 4 || len(first) != plan.RestoreBatchEntries {
		t.Errorf("create batches %d of %d, want 4 of at most %d", rp.Create.Len(), len(first), plan.RestoreBatchEntries)
	}
	if len(rp.Extents) != (n+plan.RestoreMaxParts-1)/plan.RestoreMaxParts {
		t.Errorf("%d chunk writes for %d parts, want them split at %d", len(rp.Extents), n, plan.RestoreMaxParts)
	}
	// The batches list every entry once, in order.
	var paths []string
	for _, e := range batches(t, &rp.Create) {
		paths = append(paths, e.Path)
	}
	if len(paths) != n+1 || paths[0] != "." || paths[n] != fmt.Sprintf("f%05d", n-1) || !slices.IsSortedFunc(paths, manifest.WalkOrder) {
		t.Errorf("create batches list %d entries (%q ... %q), want the %d in walk order", len(paths), paths[0], paths[len(paths)-1], n+1)
	}
	var parts []string
	for i := range rp.Extents {
		ps, err := rp.Parts(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ps {
			parts = append(parts, x.Path)
		}
	}
	if !slices.Equal(parts, paths[1:]) {
		t.Errorf("the chunk writes name %d files, want each file once, in order", len(parts))
	}
	// Long names: cut by bytes, before the count.
	long := &manifest.Snapshot{Version: 2, ID: "l", Mode: manifest.ModeFiles, ChunkSize: 1 << 20, Hash: "sha256"}
	long.Files = append(long.Files, dir("."))
	for i := range 200 {
		long.Files = append(long.Files, dir(fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 2000))))
	}
	rp, err = plan.Restore(long, long.WholeListing(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rp.Create.Len() {
		b, err := rp.Create.Batch(i)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, e := range b {
			size += 128 + len(e.Path)
		}
		if size > plan.RestoreBatchBytes && len(b) > 1 {
			t.Errorf("create batch %d holds %d bytes in %d entries, over %d", i, size, len(b), plan.RestoreBatchBytes)
		}
	}
	if rp.Create.Len() < 2 {
		t.Errorf("%d create batches of 201 long names, want them cut by size", rp.Create.Len())
	}
}

// TestFilesBuildPackOrder: a large file's whole-chunk packs come before
// the pack that holds an earlier small file and the large file's tail;
// each file still gets its own pieces, in order.
func TestFilesBuildPackOrder(t *testing.T) {
	t.Parallel()
	scan := []manifest.Entry{dir("."), file("a", 10, 1, 1), file("big", 2*4096+5, 1, 2), file("c", 7, 1, 3),
		{Path: "d", Type: manifest.TypeFile, Mode: 0o644, Size: 2*4096 + 5, MTime: 1, Inode: 2, Links: 2, LinkTo: "big"}}
	scan[2].Links = 2
	fp := files(t, scan, nil, nil)
	if len(fp.Packs) != 3 || len(fp.Packs[2].Parts) != 3 {
		t.Fatalf("packs %+v: want big's two whole chunks, then a, big's tail and c", fp.Packs)
	}
	snap := &manifest.Snapshot{Version: 2, ID: "new", Mode: manifest.ModeFiles, ChunkSize: 4096, Hash: "sha256"}
	build(t, fp, snap, func(i int) plan.Stored {
		return plan.Stored{Hash: hash(fmt.Sprint("pack", i)), Length: fp.Packs[i].Length, StoredSize: 40, New: true}
	}, nil)
	if err := snap.Validate(); err != nil {
		t.Fatalf("built: %v", err)
	}
	var desc []string
	for _, e := range snap.Files {
		d := e.Path
		for _, x := range e.Content {
			d += fmt.Sprintf(" %d@%d+%d", x.Chunk, x.Offset, x.Length)
		}
		desc = append(desc, d)
	}
	want := ". | a 2@0+10 | big 0@0+4096 1@0+4096 2@10+5 | c 2@15+7 | d 0@0+4096 1@0+4096 2@10+5"
	if got := strings.Join(desc, " | "); got != want {
		t.Errorf("entries %s\nwant    %s", got, want)
	}
}

// TestScan: a scan held packed gives back its entries, whole and one at
// a time, across batches.
func TestScan(t *testing.T) {
	t.Parallel()
	entries := []manifest.Entry{dir("."), dir("d"), file("d/x", 5, 1, 2), {Path: "l", Type: manifest.TypeSymlink, Target: "d/x", Mode: 0o777},
		{Path: "u", Type: manifest.TypeFile, Size: 3, Warning: "w", Unread: true}, {Path: "\x00bad", Type: manifest.TypeSpecial, Special: "fifo"}}
	for _, batch := range []int{0, 1, 2, 4} {
		s, err := plan.NewScan(entries, batch)
		if err != nil {
			t.Fatal(err)
		}
		var got []manifest.Entry
		if err := s.Each(func(i int, e *manifest.Entry) error {
			if i != len(got) {
				t.Errorf("batch %d: entry %d numbered %d", batch, len(got), i)
			}
			got = append(got, *e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if s.Len() != len(entries) || !reflect.DeepEqual(got, entries) {
			t.Errorf("batch %d: %d entries back %+v, want %+v", batch, s.Len(), got, entries)
		}
		for _, i := range []int{5, 0, 3, 3, 1} {
			if e, err := s.Entry(i); err != nil || !reflect.DeepEqual(e, entries[i]) {
				t.Errorf("batch %d: Entry(%d) = %+v, %v", batch, i, e, err)
			}
		}
		if _, err := s.Entry(len(entries)); err == nil {
			t.Errorf("batch %d: an entry past the end", batch)
		}
	}
	if _, err := plan.NewScan([]manifest.Entry{withContent(file("x", 1, 1, 1), manifest.Extent{Length: 1})}, 0); err == nil {
		t.Error("a scan holds content it cannot")
	}
}

// TestFilesNamesNotText: the parent is found file by file in the order a
// scan lists names that are not UTF-8 text (by their bytes on the host,
// not by their manifest form), so such files are not read again.
func TestFilesNamesNotText(t *testing.T) {
	t.Parallel()
	enc := manifest.EncodePath
	scan := []manifest.Entry{dir("."), dir("d"), file("d/inside.txt", 4, 1, 1), file(enc("d/\x80\x81"), 4, 1, 2), file("z", 4, 1, 3)}
	parent := &manifest.Snapshot{
		Version: 3, ID: "p", Mode: manifest.ModeFiles, ChunkSize: 4096, Hash: "sha256",
		Chunks: []manifest.Chunk{{Length: 12, Hash: hash("c"), StoredSize: 20}},
		Files: []manifest.Entry{dir("."), dir("d"),
			withContent(file("d/inside.txt", 4, 1, 1), manifest.Extent{Length: 4}),
			withContent(file(enc("d/\x80\x81"), 4, 1, 2), manifest.Extent{Offset: 4, Length: 4}),
			withContent(file("z", 4, 1, 3), manifest.Extent{Offset: 8, Length: 4})},
	}
	for _, l := range []*manifest.Listing{parent.WholeListing(), storedListing(t, parent)} {
		if fp := files(t, scan, l, nil); fp.Unchanged != 3 || len(fp.Read) != 0 {
			t.Errorf("unchanged %d, read %d: want 3 and none", fp.Unchanged, len(fp.Read))
		}
	}
}
