package verify_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/verify"
)

const (
	chunkSize = 4096
	nChunks   = 13
	volSize   = (nChunks-1)*chunkSize + 1000 // the last chunk is short
)

// The volume's layout: chunks 3 and 8 are zeros; chunk 6 holds the same
// bytes as chunk 1, so both name one stored object.
var (
	zeroChunks = []int{3, 8}
	sharedWith = map[int]int{6: 1}
)

type testBundle struct {
	repo     *repository.Repository
	repoRoot string
	snap     *manifest.Snapshot
	source   string // the volume the snapshot was taken of
	vol      []byte
}

// setup backs up a volume the way the pipeline does: seal each non-zero
// chunk, PutChunk, then commit the manifest with SaveSnapshot.
func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := t.Context()
	root := t.TempDir()
	st, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(ctx, st, repository.OpenOptions{CreatePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}

	vol := make([]byte, volSize)
	for i := range nChunks {
		off := i * chunkSize
		raw := vol[off:min(off+chunkSize, volSize)]
		switch src, shared := sharedWith[i]; {
		case slices.Contains(zeroChunks, i):
		case shared:
			copy(raw, vol[src*chunkSize:])
		case i%2 == 0: // compressible
			copy(raw, strings.Repeat(fmt.Sprintf("chunk %d ", i), chunkSize))
		default: // not compressible by zstd
			for j := range raw {
				raw[j] = byte((i*j*j + j>>3) ^ (j * 131 >> 5))
			}
		}
	}
	b := &testBundle{repo: repo, repoRoot: root, vol: vol, source: filepath.Join(t.TempDir(), "source.img")}
	if err := os.WriteFile(b.source, vol, 0o600); err != nil {
		t.Fatal(err)
	}

	snap := &manifest.Snapshot{
		Version: manifest.Version, ID: repository.NewSnapshotID(), JobID: "job-1", Time: time.Now().UTC(),
		Host: "host1", Path: b.source, Mode: manifest.ModeVolume, SourceKind: manifest.KindFile,
		Size: volSize, ChunkSize: chunkSize, Hash: "sha256", Compression: "zstd", Level: "fastest",
	}
	for i := range nChunks {
		off := int64(i) * chunkSize
		c := manifest.Chunk{Offset: off, Length: min(chunkSize, volSize-off)}
		raw := vol[off : off+c.Length]
		if chunk.IsZero(raw) {
			c.Zero = true
			snap.Chunks = append(snap.Chunks, c)
			continue
		}
		id := chunk.Sum(raw)
		sealed := sealer.Seal(nil, id, raw)
		if err := repo.PutChunk(ctx, id, sealed); err != nil {
			t.Fatal(err)
		}
		c.Hash, c.StoredSize = id.String(), int64(len(sealed))
		snap.Chunks = append(snap.Chunks, c)
	}
	if err := repo.SaveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if b.snap, err = repo.LoadSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	return b
}

// chunkPath is the file holding chunk i's stored object.
func (b *testBundle) chunkPath(t *testing.T, i int) string {
	t.Helper()
	id, err := b.snap.Chunks[i].ID()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(b.repoRoot, filepath.FromSlash(repository.ChunkKey(id)))
}

func (b *testBundle) corrupt(t *testing.T, i int) {
	t.Helper()
	path := b.chunkPath(t, i)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2+chunk.HeaderSize/2] ^= 0x20
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (b *testBundle) delete(t *testing.T, i int) {
	t.Helper()
	if err := os.Remove(b.chunkPath(t, i)); err != nil {
		t.Fatal(err)
	}
}

// modifiedSource writes a copy of the source with one byte changed in each
// of the given chunks and returns its path.
func (b *testBundle) modifiedSource(t *testing.T, chunks ...int) string {
	t.Helper()
	vol := slices.Clone(b.vol)
	for _, i := range chunks {
		vol[i*chunkSize+17] ^= 0x01
	}
	path := filepath.Join(t.TempDir(), "modified.img")
	if err := os.WriteFile(path, vol, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// findings returns the *verify.Finding values err joins, failing the test
// on anything else.
func findings(t *testing.T, err error) []*verify.Finding {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v (%T) is not a join of findings", err, err)
	}
	var fs []*verify.Finding
	for _, e := range joined.Unwrap() {
		var f *verify.Finding
		if !errors.As(e, &f) {
			t.Fatalf("joined error %v (%T) is not a *verify.Finding", e, e)
		}
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b *verify.Finding) int { return a.Index - b.Index })
	return fs
}

func TestSnapshotOK(t *testing.T) {
	t.Parallel()
	b := setup(t)
	distinct := nChunks - len(zeroChunks) - len(sharedWith)
	tests := []struct {
		name             string
		opts             verify.Options
		wantStoredChunks int
		wantCompared     int64
	}{
		{"read back", verify.Options{}, distinct, 0},
		{"read back, one worker", verify.Options{Workers: 1}, distinct, 0},
		{"compare", verify.Options{Compare: b.source, Workers: 4}, distinct, volSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var progress atomic.Int64
			tt.opts.Progress = func(n int64) { progress.Add(n) }
			rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := verify.Report{Chunks: nChunks, StoredChunks: tt.wantStoredChunks, Bytes: volSize, ComparedBytes: tt.wantCompared}
			if fmt.Sprint(*rep) != fmt.Sprint(want) {
				t.Errorf("report = %+v, want %+v", *rep, want)
			}
			if got := progress.Load(); got != volSize {
				t.Errorf("progress reported %d bytes, want %d", got, volSize)
			}
		})
	}
}

func TestSnapshotCompareDiffers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name    string
		changed []int
		wantMsg string
	}{
		{"data chunks", []int{2, 5, nChunks - 1}, "source differs from the snapshot"},
		{"one of two shared chunks", []int{6}, "source differs from the snapshot"},
		{"zero chunks", zeroChunks, "snapshot has zeros"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{Compare: b.modifiedSource(t, tt.changed...)})
			if !slices.Equal(rep.Damaged, tt.changed) {
				t.Errorf("Damaged = %v, want %v", rep.Damaged, tt.changed)
			}
			fs := findings(t, err)
			var got []int
			for _, f := range fs {
				got = append(got, f.Index)
				if !strings.Contains(f.Error(), tt.wantMsg) {
					t.Errorf("finding %q does not say %q", f, tt.wantMsg)
				}
				if f.Offset != b.snap.Chunks[f.Index].Offset || f.Hash != b.snap.Chunks[f.Index].Hash {
					t.Errorf("finding %+v does not locate chunk %d", f, f.Index)
				}
			}
			if !slices.Equal(got, tt.changed) {
				t.Errorf("findings name chunks %v, want %v", got, tt.changed)
			}
			wantCompared := int64(volSize)
			for _, i := range tt.changed {
				wantCompared -= b.snap.Chunks[i].Length
			}
			if rep.ComparedBytes != wantCompared {
				t.Errorf("ComparedBytes = %d, want %d", rep.ComparedBytes, wantCompared)
			}
		})
	}
}

func TestSnapshotDamaged(t *testing.T) {
	t.Parallel()
	for _, compare := range []bool{false, true} {
		t.Run(fmt.Sprintf("compare=%v", compare), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.corrupt(t, 0)
			b.corrupt(t, 7)
			b.delete(t, 10)
			wantErr := map[int]error{0: chunk.ErrCorrupt, 7: chunk.ErrCorrupt, 10: store.ErrNotFound}

			opts := verify.Options{Workers: 3}
			if compare {
				opts.Compare = b.source
			}
			rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, opts)
			if err == nil {
				t.Fatal("verify of a damaged snapshot succeeded")
			}
			if want := []int{0, 7, 10}; !slices.Equal(rep.Damaged, want) {
				t.Errorf("Damaged = %v, want %v", rep.Damaged, want)
			}
			fs := findings(t, err)
			if len(fs) != len(wantErr) {
				t.Fatalf("%d findings, want %d:\n%v", len(fs), len(wantErr), err)
			}
			for _, f := range fs {
				c := b.snap.Chunks[f.Index]
				if !errors.Is(f, wantErr[f.Index]) {
					t.Errorf("finding for chunk %d: %v, want one matching %v", f.Index, f, wantErr[f.Index])
				}
				if f.Hash != c.Hash || f.Offset != c.Offset {
					t.Errorf("finding %+v does not locate chunk %d (%s at %d)", f, f.Index, c.Hash, c.Offset)
				}
				if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("chunk %d at offset %d (%s)", f.Index, c.Offset, c.Hash)) {
					t.Errorf("error does not name chunk %d and its hash:\n%s", f.Index, msg)
				}
			}
			if !errors.Is(err, chunk.ErrCorrupt) || !errors.Is(err, store.ErrNotFound) {
				t.Errorf("joined error does not match both chunk.ErrCorrupt and store.ErrNotFound: %v", err)
			}
		})
	}
}

func TestSnapshotDamagedSharedChunk(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.corrupt(t, 1) // also chunk 6's object
	rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{})
	if want := []int{1, 6}; !slices.Equal(rep.Damaged, want) {
		t.Errorf("Damaged = %v, want %v", rep.Damaged, want)
	}
	if fs := findings(t, err); len(fs) != 2 || !errors.Is(err, chunk.ErrCorrupt) {
		t.Errorf("findings = %v, want two matching chunk.ErrCorrupt", err)
	}
}

func TestSnapshotCompareSize(t *testing.T) {
	t.Parallel()
	b := setup(t)
	short := filepath.Join(t.TempDir(), "short.img")
	if err := os.WriteFile(short, b.vol[:volSize-1], 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.img")
	for _, path := range []string{short, missing} {
		rep, err := verify.Snapshot(t.Context(), b.repo, b.snap, verify.Options{Compare: path})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("compare with %s = %+v, %v; want an error naming it", path, rep, err)
		}
	}
}
