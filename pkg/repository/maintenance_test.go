package repository_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// The maintenance objects of docs/format.md section 10, on both stores:
// forgetting, backups' registrations, damage records and what CheckReuse
// makes of them, and a prune's lists.

func fastRepo(t *testing.T, st store.Store) *repository.Repository {
	t.Helper()
	r, err := repository.Open(t.Context(), st, repository.OpenOptions{CreatePlaintext: true, Timing: repository.FastTiming})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testForget(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := fastRepo(t, e.st)
	ctx := t.Context()
	a, b := snapshot("aa01", "j1", time.Unix(100, 0)), snapshot("bb02", "j2", time.Unix(200, 0))
	for _, s := range []*manifest.Snapshot{a, b} {
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ForgetSnapshot(ctx, "aa01"); err != nil {
		t.Fatal(err)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{"bb02"}) {
		t.Errorf("after forgetting aa01: %v, %v; want [bb02]", ids, err)
	}
	if _, err := e.st.Stat(ctx, "headers/aa01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the forgotten snapshot's header: %v, want gone", err)
	}
	for _, id := range []string{"aa01", "cc03", "../config", ""} {
		if err := r.ForgetSnapshot(ctx, id); !errors.Is(err, repository.ErrSnapshotNotFound) {
			t.Errorf("forget %q: %v, want ErrSnapshotNotFound", id, err)
		}
	}
	if _, err := e.st.Stat(ctx, repository.ConfigKey); err != nil {
		t.Errorf("config after forgetting ../config: %v", err)
	}
}

func testWriters(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := fastRepo(t, e.st)
	ctx := t.Context()
	w := &repository.Writer{ID: "job-1", Source: "db1:/dev/sdb"}
	if err := r.RegisterWriter(ctx, w); err != nil {
		t.Fatal(err)
	}
	first := w.Renewed
	if w.Started.IsZero() || !w.Expires.Equal(w.Renewed.Add(repository.FastTiming.WriterExpiry)) {
		t.Errorf("registration %+v: want started set and expiry one WriterExpiry after the renewal", w)
	}
	time.Sleep(5 * time.Millisecond)
	if err := r.RegisterWriter(ctx, w); err != nil {
		t.Fatal(err)
	}
	if !w.Renewed.After(first) {
		t.Errorf("renewal did not move Renewed: %v then %v", first, w.Renewed)
	}
	if err := r.RegisterWriter(ctx, &repository.Writer{ID: "job-2"}); err != nil {
		t.Fatal(err)
	}
	ws, err := r.Writers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].ID != "job-1" || ws[0].Source != "db1:/dev/sdb" || ws[1].ID != "job-2" {
		t.Errorf("writers %+v", ws)
	}
	if err := r.RemoveWriter(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveWriter(ctx, "job-1"); err != nil {
		t.Errorf("removing again: %v", err)
	}
	if _, err := r.LoadWriter(ctx, "job-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removed writer: %v, want not found", err)
	}
	for _, bad := range []string{"", "a/b", "../x", strings.Repeat("x", 129)} {
		if err := r.RegisterWriter(ctx, &repository.Writer{ID: bad}); !errors.Is(err, repository.ErrInvalidName) {
			t.Errorf("register %q: %v, want ErrInvalidName", bad, err)
		}
	}
	// An unreadable registration stops a listing, naming it: a prune must
	// not guess.
	if err := e.st.Put(ctx, "writers/job-3", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Writers(ctx); err == nil || !strings.Contains(err.Error(), "writers/job-3") {
		t.Errorf("listing with an unreadable registration: %v, want an error naming it", err)
	}
}

// A damage record makes CheckReuse refuse a chunk that StatChunk calls
// intact (a flipped byte inside the payload), until a backup stores it
// again and clears the record.
func testDamageRecords(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := fastRepo(t, e.st)
	ctx := t.Context()
	id, obj := seal(t, r, []byte("payload that a disk will damage"))
	if err := r.PutChunk(ctx, id, obj); err != nil {
		t.Fatal(err)
	}
	e.rewrite(t, repository.ChunkKey(id), func(b []byte) []byte {
		b[len(b)-3] ^= 0x20
		return b
	})
	st, err := r.CheckReuse(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Reusable(0) {
		t.Fatalf("before any record, a flipped payload byte is invisible to the size check: %+v", st)
	}
	if _, err := r.GetChunk(ctx, id, nil); !errors.Is(err, chunk.ErrCorrupt) {
		t.Fatalf("reading the damaged chunk: %v", err)
	}
	if err := r.RecordDamage(ctx, repository.Damage{Chunk: id.String(), State: "damaged", Problem: "data hashes to …", FoundBy: repository.FoundByVerify}); err != nil {
		t.Fatal(err)
	}
	// Another process sees the record once its view is refreshed.
	other := fastRepo(t, e.st)
	st, err = other.CheckReuse(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reusable(0) || !st.Recorded || st.State != repository.ChunkIntact {
		t.Errorf("recorded damaged chunk: %+v, want intact by size but not reusable", st)
	}
	recs, err := r.DamageRecords(ctx)
	if err != nil || len(recs) != 1 || recs[0].Chunk != id.String() || recs[0].FoundBy != "verify" || recs[0].Time.IsZero() {
		t.Errorf("damage records %+v, %v", recs, err)
	}
	// Repaired: stored again, the record cleared.
	if err := other.PutChunk(ctx, id, obj); err != nil {
		t.Fatal(err)
	}
	if err := other.ClearDamage(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * repository.FastTiming.GuardRefresh)
	if st, err := r.CheckReuse(ctx, id); err != nil || !st.Reusable(0) {
		t.Errorf("after the repair: %+v, %v; want reusable", st, err)
	}
	if _, err := r.GetChunk(ctx, id, nil); err != nil {
		t.Errorf("reading the repaired chunk: %v", err)
	}
	if err := r.RecordDamage(ctx, repository.Damage{Chunk: "nothex"}); err == nil {
		t.Error("a damage record for a malformed chunk ID was accepted")
	}
}

func testPruneObjects(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := fastRepo(t, e.st)
	ctx := t.Context()
	p := &repository.PruneState{ID: "p1", Phase: repository.PhaseMarking, Shards: 4, Started: time.Now().UTC()}
	if err := r.SavePrune(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadPrune(ctx, "p1")
	if err != nil || got.Phase != repository.PhaseMarking || got.Shards != 4 {
		t.Fatalf("prune state %+v, %v", got, err)
	}
	for _, n := range []int{0, 3, 512} {
		if err := r.SavePrune(ctx, &repository.PruneState{ID: "p2", Shards: n}); err == nil {
			t.Errorf("%d shards accepted", n)
		}
	}
	ids := []chunk.ID{chunk.Sum([]byte("c")), chunk.Sum([]byte("a")), chunk.Sum([]byte("b"))}
	list := []repository.Condemned{{ID: ids[0], Size: 30}, {ID: ids[1], Size: 10}, {ID: ids[2], Size: 20}}
	if err := r.PutCondemned(ctx, "p1", 2, "tok", list); err != nil {
		t.Fatal(err)
	}
	back, err := r.LoadCondemned(ctx, "p1", 2, "tok")
	if err != nil || len(back) != 3 {
		t.Fatalf("condemned list %+v, %v", back, err)
	}
	for i := 1; i < len(back); i++ {
		if string(back[i-1].ID[:]) >= string(back[i].ID[:]) {
			t.Errorf("condemned list not sorted: %+v", back)
		}
	}
	// A damaged list is refused, never trusted to say what to delete.
	e.rewrite(t, "prune/p1/condemned/002.tok", func(b []byte) []byte {
		b[len(b)-1] ^= 1
		return b
	})
	if _, err := r.LoadCondemned(ctx, "p1", 2, "tok"); !errors.Is(err, chunk.ErrCorrupt) {
		t.Errorf("damaged condemned list: %v, want ErrCorrupt", err)
	}
	if err := r.PutPruneSnapshots(ctx, "p1", "snapshots", []string{"aa", "bb"}); err != nil {
		t.Fatal(err)
	}
	if s, err := r.LoadPruneSnapshots(ctx, "p1", "snapshots"); err != nil || !slices.Equal(s, []string{"aa", "bb"}) {
		t.Errorf("snapshot list %v, %v", s, err)
	}
	if err := r.MarkDeleting(ctx, "p1", 2); err != nil {
		t.Fatal(err)
	}
	if d, err := r.Deleting(ctx, "p1", 2); err != nil || !d {
		t.Errorf("deleting: %v, %v", d, err)
	}
	if _, done, err := r.ShardDeleted(ctx, "p1", 2); err != nil || done {
		t.Errorf("shard deleted before marked: %v, %v", done, err)
	}
	if err := r.MarkDeleted(ctx, "p1", 2, repository.ShardResult{Deleted: 5, DeletedBytes: 50, Kept: 1}); err != nil {
		t.Fatal(err)
	}
	if res, done, err := r.ShardDeleted(ctx, "p1", 2); err != nil || !done || res.Deleted != 5 || res.Kept != 1 {
		t.Errorf("shard result %+v %v %v", res, done, err)
	}
	if err := r.RemovePrune(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	for info, err := range e.st.List(ctx, "prune") {
		t.Errorf("left after RemovePrune: %v %v", info.Key, err)
	}
}

func TestShardOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		first  byte
		shards int
		want   int
	}{
		{0x00, 1, 0}, {0xff, 1, 0},
		{0x00, 16, 0}, {0x0f, 16, 0}, {0x10, 16, 1}, {0xff, 16, 15},
		{0x7f, 2, 0}, {0x80, 2, 1},
		{0xab, 256, 0xab},
	}
	for _, tt := range tests {
		var id chunk.ID
		id[0] = tt.first
		if got := repository.ShardOf(id, tt.shards); got != tt.want {
			t.Errorf("ShardOf(%02x…, %d) = %d, want %d", tt.first, tt.shards, got, tt.want)
		}
		prefixes := repository.ShardPrefixes(tt.want, tt.shards)
		key := repository.ChunkKey(id)
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(key, p) }) {
			t.Errorf("shard %d of %d: prefixes %v do not hold %s", tt.want, tt.shards, prefixes, key)
		}
		if len(prefixes) != 256/tt.shards {
			t.Errorf("shard %d of %d has %d prefixes, want %d", tt.want, tt.shards, len(prefixes), 256/tt.shards)
		}
	}
}
