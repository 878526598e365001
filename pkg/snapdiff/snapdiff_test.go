package snapdiff

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// tree builds a files-mode snapshot whose files' bytes lie in chunks
// holding them: chunks maps a chunk's name to its bytes, and a file's
// content names the chunk and the range.
type tree struct {
	snap   *manifest.Snapshot
	chunks map[string][]byte // hash -> bytes
	index  map[string]int    // chunk name -> index
}

func newTree(id string) *tree {
	return &tree{
		snap:   &manifest.Snapshot{ID: id, Mode: manifest.ModeFiles, Files: []manifest.Entry{{Path: ".", Type: manifest.TypeDir, Mode: 0o755}}},
		chunks: map[string][]byte{}, index: map[string]int{},
	}
}

func (t *tree) chunk(name string, data []byte) {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	t.index[name] = len(t.snap.Chunks)
	t.snap.Chunks = append(t.snap.Chunks, manifest.Chunk{Length: int64(len(data)), Hash: h})
	t.chunks[h] = data
}

func (t *tree) add(e manifest.Entry) *tree {
	if e.Mode == 0 {
		e.Mode = 0o644
	}
	t.snap.Files = append(t.snap.Files, e)
	return t
}

func (t *tree) file(path, chunk string, off, n int64, mtime int64) *tree {
	return t.add(manifest.Entry{Path: path, Type: manifest.TypeFile, Size: n, MTime: mtime,
		Content: []manifest.Extent{{Chunk: t.index[chunk], Offset: off, Length: n}}})
}

func source(trees ...*tree) (ChunkSource, *int) {
	reads := 0
	return func(_ context.Context, hash string) ([]byte, error) {
		reads++
		for _, t := range trees {
			if d, ok := t.chunks[hash]; ok {
				return d, nil
			}
		}
		return nil, fmt.Errorf("chunk %s not stored", hash)
	}, &reads
}

func TestTrees(t *testing.T) {
	old := newTree("old")
	old.chunk("p1", []byte("aaaabbbbccccdddd"))
	old.add(manifest.Entry{Path: "d", Type: manifest.TypeDir, Mode: 0o755})
	old.file("d/same", "p1", 0, 4, 1)
	old.file("d/touched", "p1", 4, 4, 1) // same bytes, read again: other chunk
	old.file("d/edited", "p1", 8, 4, 1)  // same size, other bytes
	old.file("d/grown", "p1", 12, 4, 1)
	old.file("gone", "p1", 0, 16, 1)
	old.add(manifest.Entry{Path: "link", Type: manifest.TypeSymlink, Target: "d/same"})
	old.add(manifest.Entry{Path: "mode", Type: manifest.TypeDir, Mode: 0o700})
	old.file("was-file", "p1", 0, 2, 1)

	new := newTree("new")
	new.chunk("p1", []byte("aaaabbbbccccdddd"))
	new.chunk("p2", []byte("bbbbCCCCdddddnew!"))
	new.add(manifest.Entry{Path: "d", Type: manifest.TypeDir, Mode: 0o755, MTime: 5})
	new.file("d/edited", "p2", 4, 4, 2)
	new.file("d/grown", "p2", 8, 5, 2)
	new.file("d/new", "p2", 13, 4, 2)
	new.file("d/same", "p1", 0, 4, 1)
	new.file("d/touched", "p2", 0, 4, 2)
	new.add(manifest.Entry{Path: "link", Type: manifest.TypeSymlink, Target: "d/new"})
	new.add(manifest.Entry{Path: "mode", Type: manifest.TypeDir, Mode: 0o750, UID: 7})
	new.add(manifest.Entry{Path: "was-file", Type: manifest.TypeDir, Mode: 0o755})

	src, reads := source(old, new)
	changes, sum, err := Trees(t.Context(), old.snap, new.snap, src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%s %s %v", c.Kind.Letter(), c.Path, c.Fields))
	}
	want := []string{
		"U d [mtime]",
		"M d/edited [content mtime]",
		"M d/grown [content mtime]",
		"+ d/new []",
		"U d/touched [mtime]",
		"- gone []",
		"M link [target]",
		"U mode [mode uid]",
		"T was-file []",
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n%q\nwant\n%q", got, want)
	}
	if sum != (Summary{Added: 1, Removed: 1, Modified: 3, Metadata: 3, Type: 1, AddedBytes: 4, RemovedBytes: 16}) {
		t.Errorf("summary %+v", sum)
	}
	// Only the same-size files in other places were read: touched and
	// edited, each in both snapshots, two chunks in all (cached).
	if *reads != 2 {
		t.Errorf("%d chunk reads, want 2", *reads)
	}
	if _, _, err := Trees(t.Context(), old.snap, new.snap, nil); err != nil {
		t.Error(err)
	}
	noRead, _, _ := Trees(t.Context(), old.snap, new.snap, nil)
	if c := noRead[4]; c.Path != "d/touched" || c.Kind != Modified {
		t.Errorf("without a chunk source, a file in other chunks is %+v, want modified", c)
	}
	bad, _ := source()
	if _, _, err := Trees(t.Context(), old.snap, new.snap, bad); err == nil {
		t.Error("a chunk that cannot be read gave no error")
	}
	if _, _, err := Trees(t.Context(), old.snap, &manifest.Snapshot{ID: "v", Mode: manifest.ModeVolume}, nil); err == nil {
		t.Error("a tree compared with a volume")
	}
}

func TestVolumes(t *testing.T) {
	vol := func(id string, size int64, hashes ...string) *manifest.Snapshot {
		s := &manifest.Snapshot{ID: id, Mode: manifest.ModeVolume, Size: size, ChunkSize: 4096}
		for i, h := range hashes {
			c := manifest.Chunk{Offset: int64(i) * 4096, Length: min(4096, size-int64(i)*4096), Hash: h}
			if h == "" {
				c.Zero = true
			}
			s.Chunks = append(s.Chunks, c)
		}
		return s
	}
	s, err := Volumes(vol("a", 10000, "h1", "", "h3"), vol("b", 13000, "h1", "h2", "h3", "h4"))
	if err != nil {
		t.Fatal(err)
	}
	// Chunk 1 became data; chunk 2 grew from 1808 to 4096 bytes; chunk 3 is new.
	if s != (VolumeSummary{OldSize: 10000, NewSize: 13000, Chunks: 4, Changed: 3, ChangedBytes: 4096 + 4096 + 712}) {
		t.Errorf("summary %+v", s)
	}
	other := vol("c", 10000, "h1")
	other.ChunkSize = 8192
	if _, err := Volumes(vol("a", 10000, "h1", "", "h3"), other); err == nil {
		t.Error("volumes of different chunk sizes compared")
	}
}
