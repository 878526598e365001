package check_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/check"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
)

func raw(n int) []byte {
	b := make([]byte, 0, 4096)
	seed := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(n)))
	for len(b) < 4096 {
		b = append(b, seed[:]...)
		seed = sha256.Sum256(seed[:])
	}
	return b
}

type fixture struct {
	root   string
	repo   *repository.Repository
	sealer *chunk.Sealer
	snaps  []string
}

// newFixture stores chunks 0..n-1 and two snapshots naming 0..n-2 and
// 1..n-1, and one unreferenced chunk (n).
func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	f := &fixture{root: t.TempDir()}
	st, err := dirstore.New(f.root)
	if err != nil {
		t.Fatal(err)
	}
	if f.repo, err = repository.Open(t.Context(), st, repository.OpenOptions{CreatePlaintext: true, Timing: repository.FastTiming}); err != nil {
		t.Fatal(err)
	}
	if f.sealer, err = chunk.NewSealer(chunk.LevelFastest); err != nil {
		t.Fatal(err)
	}
	sizes := make(map[int]int64)
	for i := range n + 1 {
		id := chunk.Sum(raw(i))
		obj := f.sealer.Seal(nil, id, raw(i))
		sizes[i] = int64(len(obj))
		if err := f.repo.PutChunk(t.Context(), id, obj); err != nil {
			t.Fatal(err)
		}
	}
	for k, span := range [][2]int{{0, n - 1}, {1, n}} {
		s := &manifest.Snapshot{
			Version: 1, ID: repository.NewSnapshotID(), JobID: "j", Time: time.Unix(int64(k), 0), Host: "h", Path: "/v",
			Mode: manifest.ModeVolume, SourceKind: manifest.KindFile, Size: int64(span[1]-span[0]) * 4096, ChunkSize: 4096,
			Hash: "sha256", Compression: "zstd", Level: "fastest",
		}
		for i := span[0]; i < span[1]; i++ {
			s.Chunks = append(s.Chunks, manifest.Chunk{Offset: int64(i-span[0]) * 4096, Length: 4096, Hash: chunk.Sum(raw(i)).String(), StoredSize: sizes[i]})
		}
		if err := f.repo.SaveSnapshot(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		f.snaps = append(f.snaps, s.ID)
	}
	return f
}

func (f *fixture) path(i int) string {
	h := chunk.Sum(raw(i)).String()
	return filepath.Join(f.root, "chunks", h[:2], h)
}

// checkAll runs every shard's check and adds up the results.
func (f *fixture) checkAll(t *testing.T, opts check.Options) check.Result {
	t.Helper()
	var sum check.Result
	opts.Shards = 4
	for g := range opts.Shards {
		opts.Shard = g
		res, err := check.Shard(t.Context(), f.repo, opts)
		if err != nil {
			t.Fatal(err)
		}
		sum.Snapshots = res.Snapshots
		sum.Unreadable = append(sum.Unreadable, res.Unreadable...)
		sum.Referenced += res.Referenced
		sum.Stored += res.Stored
		sum.Unreferenced += res.Unreferenced
		sum.Read += res.Read
		sum.Missing += res.Missing
		sum.Damaged += res.Damaged
		sum.Repaired += res.Repaired
		sum.Findings = append(sum.Findings, res.Findings...)
	}
	return sum
}

func states(res check.Result) map[string]string {
	m := make(map[string]string)
	for _, f := range res.Findings {
		m[f.Chunk] = f.State
	}
	return m
}

func TestCheck(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 12)
	clean := f.checkAll(t, check.Options{ReadData: true})
	if clean.Referenced != 12 || clean.Stored != 13 || clean.Unreferenced != 1 || clean.Read != 12 ||
		clean.Missing+clean.Damaged != 0 || clean.Snapshots != 2 {
		t.Fatalf("clean repository: %+v", clean)
	}
	// Damage three chunks: deleted, cut short, a payload byte flipped.
	if err := os.Remove(f.path(2)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f.path(5)); err != nil || os.Truncate(f.path(5), fi.Size()-1) != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.path(8))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-10] ^= 0x40
	if err := os.WriteFile(f.path(8), data, 0o600); err != nil {
		t.Fatal(err)
	}
	h := func(i int) string { return chunk.Sum(raw(i)).String() }

	quick := f.checkAll(t, check.Options{})
	if got := states(quick); quick.Read != 0 || len(got) != 2 || got[h(2)] != "missing" || got[h(5)] != "damaged" {
		t.Errorf("check without reading: %+v, want chunk 2 missing and 5 damaged (a flipped byte is not seen)", quick)
	}
	full := f.checkAll(t, check.Options{ReadData: true})
	if got := states(full); len(got) != 3 || got[h(2)] != "missing" || got[h(5)] != "damaged" || got[h(8)] != "damaged" ||
		full.Missing != 1 || full.Damaged != 2 {
		t.Errorf("check --read-data: %+v, want chunk 2 missing, 5 and 8 damaged", full)
	}
	recs, err := f.repo.DamageRecords(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, r := range recs {
		recorded = append(recorded, r.Chunk)
		if r.FoundBy != repository.FoundByCheck {
			t.Errorf("record %+v: want found by check", r)
		}
	}
	if want := []string{h(2), h(5), h(8)}; !slices.Equal(recorded, slices.Sorted(slices.Values(want))) {
		t.Errorf("damage records %v, want %v", recorded, want)
	}
	// The flipped chunk stored again: the next read-data check clears its
	// record.
	id8 := chunk.Sum(raw(8))
	if err := f.repo.PutChunk(t.Context(), id8, f.sealer.Seal(nil, id8, raw(8))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * repository.FastTiming.GuardRefresh)
	again := f.checkAll(t, check.Options{ReadData: true})
	if again.Repaired != 1 || again.Damaged != 1 || again.Missing != 1 {
		t.Errorf("after storing chunk 8 again: %+v, want it repaired (record cleared)", again)
	}
	if recorded, _ := f.repo.DamageRecorded(t.Context(), id8); recorded {
		t.Error("chunk 8's damage record is still there")
	}
}

func TestCheckSubset(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 64)
	half := f.checkAll(t, check.Options{ReadData: true, Subset: 0.5, Seed: 12345})
	if half.Read < 16 || half.Read > 48 {
		t.Errorf("a half subset read %d of 64 chunks", half.Read)
	}
	other := f.checkAll(t, check.Options{ReadData: true, Subset: 0.5, Seed: 987654321})
	if other.Read < 16 || other.Read > 48 {
		t.Errorf("a half subset with another seed read %d of 64 chunks", other.Read)
	}
	// Every chunk is selected by some seed: a chunk read by neither of two
	// complementary seeds would be a bug.
	for i := range 64 {
		id := chunk.Sum(raw(i))
		if check.Selected(id, 0.5, 0) == check.Selected(id, 0.5, ^uint64(0)) {
			t.Errorf("chunk %d: seed 0 and its complement agree", i)
		}
	}
	if all := f.checkAll(t, check.Options{ReadData: true, Subset: 1}); all.Read != 64 {
		t.Errorf("subset 1 read %d of 64", all.Read)
	}
}

func TestCheckReportsUnreadableSnapshot(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	path := filepath.Join(f.root, "snapshots", f.snaps[0])
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	res := f.checkAll(t, check.Options{})
	if len(res.Unreadable) != 4 || !strings.HasPrefix(res.Unreadable[0], f.snaps[0]+": ") || res.Snapshots != 1 {
		t.Errorf("a damaged snapshot: %+v, want it unreadable in each of the 4 shards", res)
	}
}

// snapshotsDown is a store whose reads of snapshots fail as an unreachable
// S3 does.
type snapshotsDown struct{ store.Store }

func (s snapshotsDown) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, repository.SnapshotsPrefix) {
		return nil, fmt.Errorf("get %s: %w: connection refused", key, store.ErrUnavailable)
	}
	return s.Store.Get(ctx, key)
}

func (s snapshotsDown) Peek(ctx context.Context, key string, n int) ([]byte, store.Info, error) {
	if strings.HasPrefix(key, repository.SnapshotsPrefix) {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w: connection refused", key, store.ErrUnavailable)
	}
	return s.Store.Peek(ctx, key, n)
}

// TestShardUnavailable: snapshots the repository does not answer for fail
// the check's step, to be tried again, rather than being reported as
// unreadable snapshots.
func TestShardUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	st, err := dirstore.New(f.root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(t.Context(), snapshotsDown{st}, repository.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := check.Shard(t.Context(), repo, check.Options{Shard: 0, Shards: 1})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("check of an unavailable repository = %+v, %v; want it unavailable", res, err)
	}
}
