package repository_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// filesPerDir is how many files each directory of treeSnapshot holds:
// enough for its listing to be stored in an object of its own rather than
// inside its parent's (manifest.DefaultTreeOptions).
const filesPerDir = 50

// treeSnapshot returns a files-mode snapshot of dirs directories of
// filesPerDir files each, their content in one chunk of r's.
func treeSnapshot(t *testing.T, r *repository.Repository, id string, dirs int) *manifest.Snapshot {
	t.Helper()
	cid, err := r.ChunkID([]byte("the content of every file"))
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	s := &manifest.Snapshot{
		Version: 2, ID: id, JobID: "job-" + id, Time: t0, Host: "web1", Path: "/srv", Mode: manifest.ModeFiles,
		SourceKind: manifest.KindDir, ChunkSize: 4096, Hash: r.HashName(), Compression: "zstd", Level: "fastest",
		Chunks: []manifest.Chunk{{Length: 20 * filesPerDir, Hash: cid.String(), StoredSize: 120}},
		Files:  []manifest.Entry{{Path: ".", Type: manifest.TypeDir, Mode: 0o755, MTime: mtime}},
	}
	for d := range dirs {
		dir := fmt.Sprintf("dir%03d", d)
		s.Files = append(s.Files, manifest.Entry{Path: dir, Type: manifest.TypeDir, Mode: 0o755, MTime: mtime})
		for f := range filesPerDir {
			s.Files = append(s.Files, manifest.Entry{
				Path: fmt.Sprintf("%s/a-file-with-a-longish-name-%03d", dir, f), Type: manifest.TypeFile, Mode: 0o644, MTime: mtime,
				Size: 20, Inode: uint64(10 + filesPerDir*d + f), Links: 1,
				Content: []manifest.Extent{{Chunk: 0, Offset: int64(20 * f), Length: 20}},
			})
			s.Size += 20
		}
	}
	return s
}

// storeBytes returns how many objects, and bytes, the store holds under
// prefix.
func storeBytes(t *testing.T, st store.Store, prefix string) (int, int64) {
	t.Helper()
	n, size := 0, int64(0)
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		size += info.Size
	}
	return n, size
}

// testTreeSnapshots: a files-mode snapshot is stored as directory objects
// among the chunks; saving the same tree again adds only the manifest and
// header; a missing or damaged directory object makes the snapshot
// unreadable, and the next snapshot of the tree stores it again.
func testTreeSnapshots(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	const dirs = 40
	first := treeSnapshot(t, r, "aaaa0000000000000000000000000001", dirs)
	if err := r.SaveSnapshot(ctx, first); err != nil {
		t.Fatal(err)
	}
	objects, _ := storeBytes(t, e.st, repository.ChunksPrefix)
	if objects != dirs+1 {
		t.Errorf("%d directory objects stored, want %d (the root and each directory)", objects, dirs+1)
	}
	_, before := storeBytes(t, e.st, "")
	second := treeSnapshot(t, r, "aaaa0000000000000000000000000002", dirs)
	if err := r.SaveSnapshot(ctx, second); err != nil {
		t.Fatal(err)
	}
	_, after := storeBytes(t, e.st, "")
	if n, _ := storeBytes(t, e.st, repository.ChunksPrefix); n != objects {
		t.Errorf("the same tree again stored %d more directory objects", n-objects)
	}
	if grew := after - before; grew > 4096 {
		t.Errorf("the same tree again grew the repository by %d bytes, want only its manifest and header (< 4 KiB)", grew)
	}

	back, err := r.LoadSnapshot(ctx, second.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Files) != len(second.Files) || len(back.Trees) != dirs+1 || back.Version != manifest.VersionTrees {
		t.Fatalf("loaded %d entries, %d directory objects, version %d; want %d, %d, %d",
			len(back.Files), len(back.Trees), back.Version, len(second.Files), dirs+1, manifest.VersionTrees)
	}
	for i, f := range second.Files {
		if g := back.Files[i]; g.Path != f.Path || g.Size != f.Size || len(g.Content) != len(f.Content) {
			t.Fatalf("entry %d: %+v, want %+v", i, g, f)
		}
	}
	refs, err := r.ShardRefs(ctx, []string{second.ID}, 0, 1, func(string, error) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != dirs+2 { // the directory objects and the content chunk
		t.Errorf("ShardRefs names %d objects, want %d", len(refs), dirs+2)
	}
	var leaf chunk.ID
	for _, tr := range back.Trees {
		id, err := chunk.ParseID(tr.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if refs[id] != tr.StoredSize {
			t.Errorf("ShardRefs records directory object %s at %d bytes, want %d", id, refs[id], tr.StoredSize)
		}
		if id.String() != back.Root.ID {
			leaf = id
		}
		st, err := r.StatChunk(ctx, id)
		if err != nil || st.State != repository.ChunkIntact {
			t.Errorf("StatChunk(directory object) = %+v, %v; want intact", st, err)
		}
	}
	raw, err := r.GetChunk(ctx, leaf, nil)
	if err != nil || !bytes.HasPrefix(raw, []byte("bbdir\x01")) {
		t.Errorf("GetChunk(directory object) = %.40q, %v; want its bytes", raw, err)
	}

	// A lost directory object: the snapshots naming it are unreadable,
	// and the next backup of the tree stores it again.
	if err := e.st.Delete(ctx, repository.ChunkKey(leaf)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot(ctx, second.ID); !errors.Is(err, repository.ErrTreeMissing) {
		t.Errorf("LoadSnapshot with a directory object gone = %v, want ErrTreeMissing", err)
	}
	if err := r.SaveSnapshot(ctx, treeSnapshot(t, r, "aaaa0000000000000000000000000003", dirs)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot(ctx, second.ID); err != nil {
		t.Errorf("the next backup did not store the lost directory object again: %v", err)
	}

	// A damaged one: an error naming it, never a partial snapshot.
	e.rewrite(t, repository.ChunkKey(leaf), func(b []byte) []byte { b[len(b)-3] ^= 0xff; return b })
	if _, err := r.LoadSnapshot(ctx, second.ID); !errors.Is(err, chunk.ErrCorrupt) {
		t.Errorf("LoadSnapshot with a damaged directory object = %v, want ErrCorrupt", err)
	}
	// Reading it recorded the damage: the next backup stores it again.
	if err := r.SaveSnapshot(ctx, treeSnapshot(t, r, "aaaa0000000000000000000000000004", dirs)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot(ctx, second.ID); err != nil {
		t.Errorf("the next backup did not store the damaged directory object again: %v", err)
	}
	if damaged, err := r.DamageRecorded(ctx, leaf); err != nil || damaged {
		t.Errorf("DamageRecorded after the object was stored again = %v, %v; want false", damaged, err)
	}

	// Damage a check records in an object this process has just read
	// whole (so the next backup would not look it up in the store): the
	// record still makes the next backup store it again.
	if _, err := r.LoadSnapshot(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordDamage(ctx, repository.Damage{Chunk: leaf.String(), State: "damaged", FoundBy: repository.FoundByCheck}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Delete(ctx, repository.ChunkKey(leaf)); err != nil {
		t.Fatal(err)
	}
	if err := r.SaveSnapshot(ctx, treeSnapshot(t, r, "aaaa0000000000000000000000000005", dirs)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot(ctx, second.ID); err != nil {
		t.Errorf("a directory object recorded as damaged was not stored again: %v", err)
	}
}

// peekCounter counts the reads of each object.
type peekCounter struct {
	store.Store
	mu    sync.Mutex
	reads map[string]int
}

func (c *peekCounter) Peek(ctx context.Context, key string, n int) ([]byte, store.Info, error) {
	c.mu.Lock()
	c.reads[key]++
	c.mu.Unlock()
	return c.Store.Peek(ctx, key, n)
}

// TestShardRefsWalksTreesOnce: ShardRefs reads a directory object named
// by several snapshots once, names every object and chunk of each, and
// reports every snapshot naming a damaged object, however it is shared.
func TestShardRefsWalksTreesOnce(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t)
	counter := &peekCounter{Store: e.st, reads: make(map[string]int)}
	r, err := repository.Open(t.Context(), counter, repository.OpenOptions{CreatePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const dirs = 30
	s1 := treeSnapshot(t, r, "bbbb0000000000000000000000000001", dirs)
	s2 := treeSnapshot(t, r, "bbbb0000000000000000000000000002", dirs) // the same tree
	s3 := treeSnapshot(t, r, "bbbb0000000000000000000000000003", dirs)
	s3.Files[2].MTime++ // dir000/file0: dir000 and the root differ
	for _, s := range []*manifest.Snapshot{s1, s2, s3} {
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	loaded, err := r.LoadSnapshot(ctx, s3.ID)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{s1.ID, s2.ID, s3.ID}
	clear(counter.reads)
	refs, err := r.ShardRefs(ctx, ids, 0, 1, func(id string, err error) error { return fmt.Errorf("%s: %w", id, err) })
	if err != nil {
		t.Fatal(err)
	}
	// dirs+1 objects of s1 (shared by s2), 2 more of s3, and the chunk.
	if len(refs) != dirs+1+2+1 {
		t.Errorf("ShardRefs names %d objects, want %d", len(refs), dirs+1+2+1)
	}
	for key, n := range counter.reads {
		if strings.HasPrefix(key, repository.ChunksPrefix) && n != 1 {
			t.Errorf("%s read %d times, want once", key, n)
		}
	}
	// Damage s1's (and s2's) dir000; s3 has its own.
	var damaged chunk.ID
	s1loaded, err := r.LoadSnapshot(ctx, s1.ID)
	if err != nil {
		t.Fatal(err)
	}
	mine := make(map[string]bool)
	for _, tr := range loaded.Trees {
		mine[tr.Hash] = true
	}
	for _, tr := range s1loaded.Trees {
		if !mine[tr.Hash] && tr.Hash != s1loaded.Root.ID {
			damaged, _ = chunk.ParseID(tr.Hash) // dir000 of s1 and s2
		}
	}
	if damaged == (chunk.ID{}) {
		t.Fatal("no directory object of s1 that s3 does not share")
	}
	if err := e.st.Delete(ctx, repository.ChunkKey(damaged)); err != nil {
		t.Fatal(err)
	}
	var bad []string
	if _, err := r.ShardRefs(ctx, ids, 0, 1, func(id string, err error) error {
		if !errors.Is(err, repository.ErrTreeMissing) {
			t.Errorf("snapshot %s: %v, want ErrTreeMissing", id, err)
		}
		bad = append(bad, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bad, []string{s1.ID, s2.ID}) {
		t.Errorf("snapshots reported unreadable: %v, want %v (both naming the lost object, not s3)", bad, []string{s1.ID, s2.ID})
	}
}

// TestTreeReadLatelyButDeletedIsStoredAgain: an object this process read
// whole moments ago and a prune has deleted since is stored again by the
// next snapshot naming it, not named as it was.
func TestTreeReadLatelyButDeletedIsStoredAgain(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	first := treeSnapshot(t, r, "cccc0000000000000000000000000001", 5)
	if err := r.SaveSnapshot(ctx, first); err != nil {
		t.Fatal(err)
	}
	loaded, err := r.LoadSnapshot(ctx, first.ID) // read whole: remembered
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range loaded.Trees {
		id, _ := chunk.ParseID(tr.Hash)
		if err := r.DeleteChunk(ctx, id); err != nil { // as a prune's sweep
			t.Fatal(err)
		}
	}
	second := treeSnapshot(t, r, "cccc0000000000000000000000000002", 5)
	if err := r.SaveSnapshot(ctx, second); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot(ctx, second.ID); err != nil {
		t.Errorf("the snapshot after the objects were deleted: %v", err)
	}
}

// dirsSnapshot is treeSnapshot for the given directories (each listed
// after its parent), each holding filesPerDir files.
func dirsSnapshot(t *testing.T, r *repository.Repository, id string, dirs ...string) *manifest.Snapshot {
	t.Helper()
	s := treeSnapshot(t, r, id, 0)
	for _, dir := range dirs {
		s.Files = append(s.Files, manifest.Entry{Path: dir, Type: manifest.TypeDir, Mode: 0o755})
		for f := range filesPerDir {
			s.Files = append(s.Files, manifest.Entry{ // the same directory, the same listing, in any snapshot
				Path: fmt.Sprintf("%s/file-of-%s-with-a-longish-name-%03d", dir, strings.ReplaceAll(dir, "/", "-"), f), Type: manifest.TypeFile, Mode: 0o644,
				Size: 20, Inode: uint64(10 + f), Links: 1,
				Content: []manifest.Extent{{Chunk: 0, Offset: int64(20 * f), Length: 20}},
			})
			s.Size += 20
		}
	}
	return s
}

// TestShardRefsAfterAFailure: once a snapshot's walk fails on a lost
// object, another snapshot sharing some of its objects (not the lost
// one) is still walked whole, every object and chunk below them named.
func TestShardRefsAfterAFailure(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	a := dirsSnapshot(t, r, "dddd0000000000000000000000000001", "x", "x/y", "z", "z/w", "z/w/v")
	b := dirsSnapshot(t, r, "dddd0000000000000000000000000002", "z", "z/w", "z/w/v")
	for _, s := range []*manifest.Snapshot{a, b} {
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	la, err := r.LoadSnapshot(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := r.LoadSnapshot(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	inB := make(map[string]bool)
	for _, tr := range lb.Trees {
		inB[tr.Hash] = true
	}
	var lost string // x/y's object: A's only, below x
	for _, tr := range la.Trees {
		if !inB[tr.Hash] && tr.Hash != la.Root.ID {
			id, _ := chunk.ParseID(tr.Hash)
			raw, err := r.GetChunk(ctx, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			entries, err := manifest.DecodeTree(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(entries, func(e manifest.TreeEntry) bool { return e.Type == manifest.TypeDir }) {
				lost = tr.Hash // x's object names y; y's names only files
			}
		}
	}
	shared := 0
	for _, tr := range la.Trees {
		if inB[tr.Hash] {
			shared++
		}
	}
	if lost == "" || len(lb.Trees) != 4 || shared != 3 {
		t.Fatalf("x/y's object found: %t; B has %d objects, %d shared with A; want 4, 3 (z, z/w, z/w/v)", lost != "", len(lb.Trees), shared)
	}
	lostID, _ := chunk.ParseID(lost)
	if err := e.st.Delete(ctx, repository.ChunkKey(lostID)); err != nil {
		t.Fatal(err)
	}
	var bad []string
	refs, err := r.ShardRefs(ctx, []string{a.ID, b.ID}, 0, 1, func(id string, err error) error {
		bad = append(bad, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bad, []string{a.ID}) {
		t.Errorf("unreadable: %v, want only %s", bad, a.ID)
	}
	for _, tr := range lb.Trees {
		id, _ := chunk.ParseID(tr.Hash)
		if _, ok := refs[id]; !ok {
			t.Errorf("object %s of the readable snapshot is not named", tr.Hash)
		}
	}
}
