package restore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/restore"
)

// FuzzRestoreTree feeds manifests to validation and then to a real tree
// restore into a temporary directory: whatever a manifest that passes
// validation says, the restore may fail but must not panic, and must write
// nothing outside its target.
func FuzzRestoreTree(f *testing.F) {
	entries, data := sampleTree()
	b := treeSetup(f, entries, data)
	snap := &manifest.Snapshot{
		Version: 2, ID: "f022", Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		ChunkSize: treeChunkSize, Hash: "sha256", Compression: "zstd", Level: "fastest",
	}
	index := make(map[string][]manifest.Extent)
	for i, c := range b.chunks {
		snap.Chunks = append(snap.Chunks, manifest.Chunk{Length: c.length, Hash: c.id.String(), StoredSize: 1})
		for _, p := range c.parts {
			index[p.Path] = append(index[p.Path], manifest.Extent{Chunk: i, Offset: p.ChunkOffset, Length: p.Length})
		}
	}
	for _, e := range b.entries {
		if e.Type == manifest.TypeFile {
			src := e.Path
			if e.LinkTo != "" {
				src = e.LinkTo
			} else {
				snap.Size += e.Size
			}
			e.Content = index[src]
		}
		snap.Files = append(snap.Files, e)
	}
	seed, err := manifest.Encode(snap)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(bytes.Replace(seed, []byte(`"o":10`), []byte(`"o":9223372036854775800`), 1))
	f.Add(bytes.Replace(seed, []byte(`"path":"d/sub"`), []byte(`"path":"../sub"`), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Decode(data)
		if err != nil {
			return
		}
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		if err := os.Mkdir(outside, 0o700); err != nil {
			t.Fatal(err)
		}
		canary := filepath.Join(outside, "canary")
		if err := os.WriteFile(canary, []byte("untouched"), 0o600); err != nil {
			t.Fatal(err)
		}
		tr := restore.Tree{Path: filepath.Join(base, "target"), JobID: "fuzz"}
		restoreAll(t, b, tr, m)
		if got, err := os.ReadFile(canary); err != nil || string(got) != "untouched" {
			t.Fatalf("the restore changed a file outside its target: %q, %v", got, err)
		}
		names, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if n.Name() != "target" && n.Name() != "outside" {
				t.Fatalf("the restore made %s beside its target", n.Name())
			}
		}
		if inside, _ := os.ReadDir(outside); len(inside) != 1 {
			t.Fatalf("the restore wrote into a directory outside its target: %v", inside)
		}
	})
}

// restoreAll runs every step of a tree restore of m, as the coordinator
// plans it, ignoring the errors steps return (a fuzzed manifest may name
// chunks the repository does not hold).
func restoreAll(t *testing.T, b *treeBundle, tr restore.Tree, m *manifest.Snapshot) {
	byChunk := make(map[int][]plan.Extent)
	for _, e := range m.Files {
		if e.Type != manifest.TypeFile || e.LinkTo != "" || e.Unread {
			continue
		}
		var at int64
		for _, x := range e.Content {
			byChunk[x.Chunk] = append(byChunk[x.Chunk], plan.Extent{Path: e.Path, FileOffset: at, ChunkOffset: x.Offset, Length: x.Length})
			at += x.Length
		}
	}
	_ = tr.CreateEntries(m.Files)
	for ci, parts := range byChunk {
		c := m.Chunks[ci]
		if c.Zero {
			continue
		}
		id, err := chunk.ParseID(c.Hash)
		if err != nil {
			t.Fatalf("a validated manifest holds hash %q: %v", c.Hash, err)
		}
		_, _ = tr.WriteExtents(t.Context(), b.repo, id, c.Length, parts, nil)
	}
	_ = tr.SetMetadata(m.Files)
	_ = tr.MakeLinks(m.Files)
	_ = tr.SetDirs(m.Files)
}
