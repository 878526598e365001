package prune_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/prune"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
)

// testRepo is a directory repository with the protocol's fast timing, in
// which the tests play backups and prunes in one process.
type testRepo struct {
	t      *testing.T
	root   string
	st     store.Store
	repo   *repository.Repository
	sealer *chunk.Sealer
	mu     sync.Mutex
	status []string
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	root := t.TempDir()
	st, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(t.Context(), st, repository.OpenOptions{CreatePlaintext: true, Timing: repository.FastTiming})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, root: root, st: st, repo: repo, sealer: sealer}
}

// raw returns chunk n's data: 4096 bytes that hash apart from every other
// n's.
func raw(n int) []byte {
	b := make([]byte, 0, 4096)
	seed := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(n)))
	for len(b) < 4096 {
		b = append(b, seed[:]...)
		seed = sha256.Sum256(seed[:])
	}
	return b
}

func idOf(n int) chunk.ID { return chunk.Sum(raw(n)) }

// backup plays a backup of chunks as a registered writer: each chunk is
// reused if CheckReuse allows, else stored; hold, if set, runs between
// storing the chunks and committing (the backup is "running" there).
// It returns the snapshot's ID and how many chunks it stored.
func (r *testRepo) backup(ctx context.Context, jobID string, chunks []int, hold func()) (string, int, error) {
	w := &repository.Writer{ID: jobID, Source: "h:/vol"}
	if err := r.repo.RegisterWriter(ctx, w); err != nil {
		return "", 0, err
	}
	defer r.repo.RemoveWriter(context.WithoutCancel(ctx), jobID)
	snap := &manifest.Snapshot{
		Version: 1, ID: repository.NewSnapshotID(), JobID: jobID, Time: time.Now().UTC(), Host: "h", Path: "/vol",
		Mode: manifest.ModeVolume, SourceKind: manifest.KindFile, Size: int64(len(chunks)) * 4096, ChunkSize: 4096,
		Hash: "sha256", Compression: "zstd", Level: "fastest",
		Stats: manifest.Stats{Chunks: len(chunks)},
	}
	stored := 0
	for i, n := range chunks {
		id := idOf(n)
		st, err := r.repo.CheckReuse(ctx, id)
		if err != nil {
			return "", stored, err
		}
		size := st.Size
		if !st.Reusable(0) {
			obj := r.sealer.Seal(nil, id, raw(n))
			if err := r.repo.PutChunk(ctx, id, obj); err != nil {
				return "", stored, err
			}
			if st.Recorded {
				if err := r.repo.ClearDamage(ctx, id); err != nil {
					return "", stored, err
				}
			}
			size = int64(len(obj))
			stored++
		}
		snap.Chunks = append(snap.Chunks, manifest.Chunk{Offset: int64(i) * 4096, Length: 4096, Hash: id.String(), StoredSize: size})
	}
	if hold != nil {
		hold()
	}
	if err := r.repo.SaveSnapshot(ctx, snap); err != nil {
		return "", stored, err
	}
	return snap.ID, stored, nil
}

func (r *testRepo) mustBackup(jobID string, chunks ...int) string {
	r.t.Helper()
	id, _, err := r.backup(r.t.Context(), jobID, chunks, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

// runner runs the steps in this process, each shard in a goroutine of
// its own, as a fleet's workers would.
func (r *testRepo) runner() *prune.Runner { return r.runnerOn(r.repo) }

// runnerOn is runner with every step working on repo.
func (r *testRepo) runnerOn(repo *repository.Repository) *prune.Runner {
	return &prune.Runner{
		Repo: repo,
		Condemn: func(ctx context.Context, id string, shards []int) (map[int]*prune.CondemnResult, error) {
			return fan(shards, func(g int) (*prune.CondemnResult, error) {
				return prune.Condemn(ctx, repo, id, g, strings.ToLower(rand.Text()), nil)
			})
		},
		Sweep: func(ctx context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
			return fan(shards, func(g int) (*repository.ShardResult, error) { return prune.Sweep(ctx, repo, id, g, nil) })
		},
		Status: func(msg string) {
			r.mu.Lock()
			r.status = append(r.status, msg)
			r.mu.Unlock()
		},
	}
}

func fan[T any](shards []int, step func(g int) (*T, error)) (map[int]*T, error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		out  = make(map[int]*T)
		errs []error
	)
	for _, g := range shards {
		wg.Go(func() {
			res, err := step(g)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out[g] = res
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// present reports which of the chunks n are stored.
func (r *testRepo) present(ns ...int) []bool {
	r.t.Helper()
	out := make([]bool, len(ns))
	for i, n := range ns {
		st, err := r.repo.StatChunk(r.t.Context(), idOf(n))
		if err != nil {
			r.t.Fatal(err)
		}
		out[i] = st.State == repository.ChunkIntact
	}
	return out
}

// verifyAll reads back every chunk of every snapshot.
func (r *testRepo) verifyAll() {
	r.t.Helper()
	snaps, err := r.repo.Snapshots(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, s := range snaps {
		for i, c := range s.Chunks {
			id, _ := c.ID()
			if _, err := r.repo.GetChunk(r.t.Context(), id, nil); err != nil {
				r.t.Errorf("snapshot %s (job %s), chunk %d: %v", s.ID, s.JobID, i, err)
			}
		}
	}
}

func (r *testRepo) waitStatus(substr string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		found := slices.ContainsFunc(r.status, func(s string) bool { return strings.Contains(s, substr) })
		r.mu.Unlock()
		if found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("the prune never said %q; it said %q", substr, r.status)
}

func TestPruneDeletesWhatNoSnapshotNames(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	s1 := r.mustBackup("j1", 1, 2, 3)
	r.mustBackup("j2", 2, 3, 4)
	r.mustBackup("j3", 5) // forgotten below, with chunk 5 only its own
	if err := r.repo.ForgetSnapshot(t.Context(), s1); err != nil {
		t.Fatal(err)
	}
	snaps, _ := r.repo.SnapshotIDs(t.Context())
	for _, s := range snaps {
		if s != s1 {
			if sn, _ := r.repo.LoadSnapshot(t.Context(), s); sn.JobID == "j3" {
				if err := r.repo.ForgetSnapshot(t.Context(), s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	p, err := r.runner().Run(t.Context(), "p1", prune.Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.present(1, 2, 3, 4, 5), []bool{false, true, true, true, false}; !slices.Equal(got, want) {
		t.Errorf("chunks 1..5 present %v, want %v", got, want)
	}
	if p.Phase != repository.PhaseDone || p.Deleted != 2 || p.Condemned != 2 || p.Chunks != 5 || p.Kept != 0 || p.Error != "" {
		t.Errorf("final state %+v: want done, 5 chunks, 2 condemned and deleted", p)
	}
	r.verifyAll()
	// Its lists are gone; its state stays, done.
	var left []string
	for info, err := range r.st.List(t.Context(), repository.PrunePrefix) {
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, info.Key)
	}
	if len(left) > 0 {
		t.Errorf("a done prune left %q", left)
	}
	// A second prune finds nothing.
	p2, err := r.runner().Run(t.Context(), "p2", prune.Options{Shards: 2})
	if err != nil || p2.Condemned != 0 || p2.Deleted != 0 {
		t.Errorf("second prune: %+v, %v: want nothing condemned", p2, err)
	}
}

func TestPruneDryRunDeletesNothing(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	s1 := r.mustBackup("j1", 1, 2)
	r.mustBackup("j2", 2)
	if err := r.repo.ForgetSnapshot(t.Context(), s1); err != nil {
		t.Fatal(err)
	}
	p, err := r.runner().Run(t.Context(), "dry", prune.Options{DryRun: true, Shards: 16})
	if err != nil {
		t.Fatal(err)
	}
	if p.Condemned != 1 || p.Deleted != 0 || p.Phase != repository.PhaseDone || !p.DryRun {
		t.Errorf("dry run state %+v: want 1 condemned, none deleted, done", p)
	}
	if got := r.present(1, 2); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("after a dry run chunks present %v, want both", got)
	}
}

// A backup that was running when the prune condemned its new chunks
// (unnamed by any snapshot then) is waited for; once it commits, its
// chunks are kept.
func TestPruneWaitsForRunningBackup(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	r.mustBackup("j1", 1)
	release := make(chan struct{})
	stored := make(chan struct{})
	backupErr := make(chan error, 1)
	go func() {
		_, _, err := r.backup(t.Context(), "running", []int{1, 7, 8}, func() {
			close(stored)
			<-release
		})
		backupErr <- err
	}()
	<-stored // chunks 7 and 8 are stored, named by no snapshot yet
	done := make(chan error, 1)
	var final *repository.PruneState
	go func() {
		var err error
		final, err = r.runner().Run(t.Context(), "p", prune.Options{Shards: 16})
		done <- err
	}()
	r.waitStatus("waiting for backup running")
	select {
	case err := <-done:
		t.Fatalf("the prune ended (%v) while a backup registered before it ran", err)
	default:
	}
	close(release)
	if err := <-backupErr; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if final.Condemned != 2 || final.Deleted != 0 || final.Kept != 2 {
		t.Errorf("final state %+v: want 2 condemned, kept by the late snapshot", final)
	}
	if got := r.present(1, 7, 8); !slices.Equal(got, []bool{true, true, true}) {
		t.Errorf("chunks present %v, want all", got)
	}
	r.verifyAll()
}

// A backup that fails leaves chunks nobody names: the prune that waited
// for it deletes them.
func TestPruneDeletesFailedBackupsChunks(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	release := make(chan struct{})
	stored := make(chan struct{})
	failed := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer close(failed)
		_, _, _ = r.backup(ctx, "failing", []int{7}, func() {
			close(stored)
			<-release
			cancel() // the commit fails: the backup ends without a snapshot
		})
	}()
	<-stored
	done := make(chan error, 1)
	go func() {
		_, err := r.runner().Run(t.Context(), "p", prune.Options{Shards: 16})
		done <- err
	}()
	r.waitStatus("waiting for backup failing")
	close(release)
	<-failed
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.present(7); got[0] {
		t.Error("the failed backup's chunk survived the prune")
	}
}

// A backup that starts after the prune condemned a chunk it reuses asks
// the prune to keep it; the sweep keeps it, and the snapshot verifies.
func TestPruneKeepsWhatALaterBackupReuses(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	old := r.mustBackup("old", 1, 2)
	r.mustBackup("keep", 3)
	if err := r.repo.ForgetSnapshot(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	rn := r.runner()
	var reused int
	sweep := rn.Sweep
	rn.Sweep = func(ctx context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
		// Sweeping: chunks 1 and 2 are condemned. A new backup reuses 1.
		_, stored, err := r.backup(ctx, "later", []int{1, 3}, nil)
		if err != nil {
			return nil, err
		}
		reused = 2 - stored
		return sweep(ctx, id, shards)
	}
	p, err := rn.Run(t.Context(), "p", prune.Options{Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	if reused != 2 {
		t.Errorf("the later backup reused %d of its 2 chunks, want both (chunk 1 was still stored)", reused)
	}
	if p.Condemned != 2 || p.Deleted != 1 || p.Kept != 1 {
		t.Errorf("final state %+v: want chunks 1 and 2 condemned, 2 deleted, 1 kept", p)
	}
	if got := r.present(1, 2, 3); !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("chunks present %v, want 1 and 3", got)
	}
	r.verifyAll()
}

// A backup that meets a condemned chunk whose shard is being deleted waits
// until the shard is deleted, then stores the chunk again.
func TestBackupWaitsForDeletingShard(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	old := r.mustBackup("old", 1)
	if err := r.repo.ForgetSnapshot(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	rn := r.runner()
	const shards = 4
	g := repository.ShardOf(idOf(1), shards)
	var waited time.Duration
	var stored int
	rn.Sweep = func(ctx context.Context, id string, all []int) (map[int]*repository.ShardResult, error) {
		if err := r.repo.MarkDeleting(ctx, id, g); err != nil {
			return nil, err
		}
		// The backup asks for chunk 1 while its shard is deleting: it
		// must wait for the sweep, which starts only later.
		type result struct {
			stored int
			err    error
		}
		backed := make(chan result, 1)
		start := time.Now()
		go func() {
			_, n, err := r.backup(ctx, "during", []int{1}, nil)
			backed <- result{n, err}
		}()
		select {
		case res := <-backed:
			return nil, fmt.Errorf("the backup went on (%v) while the shard was being deleted", res.err)
		case <-time.After(2 * repository.FastTiming.DeleteFence):
		}
		out, err := fan(all, func(g int) (*repository.ShardResult, error) { return prune.Sweep(ctx, r.repo, id, g, nil) })
		res := <-backed
		waited, stored = time.Since(start), res.stored
		if res.err != nil {
			return nil, res.err
		}
		return out, err
	}
	p, err := rn.Run(t.Context(), "p", prune.Options{Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	if p.Deleted != 1 && p.Kept != 1 {
		t.Errorf("final state %+v", p)
	}
	if stored != 1 && p.Deleted == 1 {
		t.Errorf("the backup stored %d chunks after the shard was deleted, want 1", stored)
	}
	if waited < repository.FastTiming.DeleteFence {
		t.Errorf("the backup waited %s, less than the delete fence", waited)
	}
	if got := r.present(1); !got[0] {
		t.Error("chunk 1, named by the backup that waited, is gone")
	}
	r.verifyAll()
}

// A sweep run after its prune stopped sweeping (a straggling duplicate of
// a task) deletes nothing.
func TestSweepStragglerDeletesNothing(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	old := r.mustBackup("old", 1, 2, 3)
	if err := r.repo.ForgetSnapshot(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	rn := r.runner()
	rn.Sweep = func(ctx context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
		return nil, errors.New("the fleet is gone")
	}
	if _, err := rn.Run(t.Context(), "p", prune.Options{Shards: 1}); err == nil {
		t.Fatal("the prune succeeded without sweeping")
	}
	p, err := r.repo.LoadPrune(t.Context(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != repository.PhaseDone || !strings.Contains(p.Error, "the fleet is gone") {
		t.Errorf("a failed prune's state %+v: want done (closed), naming the failure", p)
	}
	if _, err := prune.Sweep(t.Context(), r.repo, "p", 0, nil); !errors.Is(err, prune.ErrNotSweeping) {
		t.Errorf("a straggling sweep: %v, want ErrNotSweeping", err)
	}
	if got := r.present(1, 2, 3); !slices.Equal(got, []bool{true, true, true}) {
		t.Errorf("chunks present %v: a sweep of a prune that was not sweeping deleted some", got)
	}
}

// A snapshot that cannot be read stops the prune before anything is
// condemned.
func TestPruneStopsAtUnreadableSnapshot(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	s1 := r.mustBackup("j1", 1)
	r.mustBackup("j2", 2)
	path := filepath.Join(r.root, "snapshots", s1)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The other snapshot's chunk is garbage too once s1 is unknown: it
	// must survive.
	_, err = r.runner().Run(t.Context(), "p", prune.Options{Shards: 2})
	if !errors.Is(err, prune.ErrUnreadableSnapshot) || !strings.Contains(err.Error(), s1) {
		t.Fatalf("prune with a damaged snapshot: %v, want ErrUnreadableSnapshot naming %s", err, s1)
	}
	if got := r.present(1, 2); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("chunks present %v, want both", got)
	}
	// It is closed: the next prune is not blocked by it.
	if _, err := r.runner().Run(t.Context(), "p2", prune.Options{Shards: 2}); errors.Is(err, prune.ErrBusy) {
		t.Errorf("the next prune: %v", err)
	}
}

// flakyReads is a store whose reads of snapshots fail as an unreachable
// S3 does.
type flakyReads struct{ store.Store }

func (f flakyReads) fail(key string) error {
	if strings.HasPrefix(key, repository.SnapshotsPrefix) {
		return fmt.Errorf("get %s: %w: connection refused", key, store.ErrUnavailable)
	}
	return nil
}

func (f flakyReads) Get(ctx context.Context, key string) ([]byte, error) {
	if err := f.fail(key); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, key)
}

func (f flakyReads) Peek(ctx context.Context, key string, n int) ([]byte, store.Info, error) {
	if err := f.fail(key); err != nil {
		return nil, store.Info{}, err
	}
	return f.Store.Peek(ctx, key, n)
}

// TestPruneUnavailableIsNotUnreadable: a snapshot that cannot be read
// because the repository does not answer stops the prune as unavailable
// (its step is tried again), not as an unreadable snapshot, and deletes
// nothing.
func TestPruneUnavailableIsNotUnreadable(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	r.mustBackup("j1", 1)
	repo, err := repository.Open(t.Context(), flakyReads{r.st}, repository.OpenOptions{Timing: repository.FastTiming})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.runnerOn(repo).Run(t.Context(), "p", prune.Options{Shards: 2})
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, prune.ErrUnreadableSnapshot) {
		t.Fatalf("prune of an unavailable repository: %v, want it unavailable, not an unreadable snapshot", err)
	}
	if got := r.present(1); !slices.Equal(got, []bool{true}) {
		t.Errorf("chunks present %v, want it kept", got)
	}
	// The same for every step that reads snapshots (marking, sweeping's
	// late snapshots, check): ShardRefs asks bad about the snapshot only
	// when the snapshot is at fault.
	ids, err := r.repo.SnapshotIDs(t.Context())
	if err != nil || len(ids) != 1 {
		t.Fatalf("snapshots %v, %v", ids, err)
	}
	asked := 0
	_, err = repo.ShardRefs(t.Context(), ids, 0, 1, func(string, error) error { asked++; return nil })
	if !errors.Is(err, store.ErrUnavailable) || asked != 0 {
		t.Errorf("ShardRefs of an unavailable repository: %v, bad asked %d times; want unavailable, bad never asked", err, asked)
	}
}

// A prune whose runner stops (a coordinator killed) is resumed from its
// phase by running it again; meanwhile another prune is refused, or, told
// the first was abandoned, closes it.
func TestPruneResumesAndRefusesASecond(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	old := r.mustBackup("old", 1, 2)
	r.mustBackup("new", 2)
	if err := r.repo.ForgetSnapshot(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	rn := r.runner()
	ctx, kill := context.WithCancel(t.Context())
	sweep := rn.Sweep
	rn.Sweep = func(c context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
		kill() // killed as sweeping begins
		return nil, c.Err()
	}
	if _, err := rn.Run(ctx, "p", prune.Options{Shards: 2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted prune: %v", err)
	}
	if p, _ := r.repo.LoadPrune(t.Context(), "p"); p.Phase != repository.PhaseSweeping {
		t.Fatalf("interrupted prune is %s, want sweeping (kept for resuming)", p.Phase)
	}
	if _, err := r.runner().Run(t.Context(), "other", prune.Options{}); !errors.Is(err, prune.ErrBusy) {
		t.Errorf("a second prune meanwhile: %v, want ErrBusy", err)
	}
	rn.Sweep = sweep
	p, err := rn.Run(t.Context(), "p", prune.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Deleted != 1 {
		t.Errorf("resumed prune %+v: want chunk 1 deleted", p)
	}
	if got := r.present(1, 2); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("chunks present %v, want only 2", got)
	}
	// Abandoned: a prune left sweeping by a job that ended is closed by the
	// next one, which then runs.
	r.mustBackup("more", 9)
	rn.Sweep = func(c context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
		return nil, context.Canceled
	}
	ctx2, kill2 := context.WithCancel(t.Context())
	rn.Sweep = func(c context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
		kill2()
		return nil, c.Err()
	}
	if _, err := rn.Run(ctx2, "left", prune.Options{Shards: 2}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	p3, err := r.runner().Run(t.Context(), "after", prune.Options{Shards: 2, Abandoned: func(id string) bool { return id == "left" }})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := r.repo.LoadPrune(t.Context(), "left"); left.Phase != repository.PhaseDone || left.Error == "" {
		t.Errorf("abandoned prune %+v: want done with the reason", left)
	}
	if p3.Phase != repository.PhaseDone {
		t.Errorf("the prune after: %+v", p3)
	}
	r.verifyAll()
}

// Backups, forgets and prunes all at once, on a small universe of chunks
// so that backups keep meeting condemned chunks, some of them while their
// shard is deleting: afterwards every snapshot's every chunk is there.
func TestPruneConcurrentWithBackups(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	backups := 0
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// A window moving on through each writer's own 600 chunks,
				// and one chunk of six backups back, whose snapshot may
				// be forgotten and the chunk condemned.
				var chunks []int
				for k := range 6 {
					chunks = append(chunks, w*1000+(i*6+k)%600)
				}
				chunks = append(chunks, w*1000+((i+600-6)*6)%600)
				_, _, err := r.backup(ctx, fmt.Sprintf("w%d-%d", w, i), chunks, func() { time.Sleep(time.Duration(i%4) * 50 * time.Millisecond) })
				if err != nil && ctx.Err() == nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if err == nil {
					mu.Lock()
					backups++
					mu.Unlock()
				}
				// Keep the newest two of each writer, as forget --keep-last 2.
				snaps, _ := r.repo.SnapshotHeaders(context.WithoutCancel(ctx))
				var mine []string
				for _, s := range snaps {
					if strings.HasPrefix(s.JobID, fmt.Sprintf("w%d-", w)) {
						mine = append(mine, s.ID)
					}
				}
				for len(mine) > 2 {
					_ = r.repo.ForgetSnapshot(context.WithoutCancel(ctx), mine[0])
					mine = mine[1:]
				}
			}
		})
	}
	var deleted, kept int64
	for i := range 4 {
		rn := r.runner()
		sweep := rn.Sweep
		rn.Sweep = func(ctx context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
			time.Sleep(150 * time.Millisecond) // as long as a fleet takes to hand out the work
			return sweep(ctx, id, shards)
		}
		p, err := rn.Run(t.Context(), fmt.Sprintf("p%d", i), prune.Options{Shards: 4})
		if err != nil {
			t.Fatalf("prune %d: %v", i, err)
		}
		deleted += p.Deleted
		kept += p.Kept
	}
	stop()
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d backups; 4 prunes deleted %d chunks and kept %d condemned ones that backups named", backups, deleted, kept)
	if deleted == 0 {
		t.Error("the prunes deleted nothing: the test did not exercise deletion")
	}
	r.verifyAll()
}

// treeBackup commits a files-mode snapshot holding a directory for each of
// dirs, each with files named after it whose content lies in chunk 1.
func (r *testRepo) treeBackup(jobID string, dirs ...string) string {
	r.t.Helper()
	ctx := r.t.Context()
	id := idOf(1)
	st, err := r.repo.CheckReuse(ctx, id)
	if err != nil {
		r.t.Fatal(err)
	}
	size := st.Size
	if !st.Reusable(0) {
		obj := r.sealer.Seal(nil, id, raw(1))
		if err := r.repo.PutChunk(ctx, id, obj); err != nil {
			r.t.Fatal(err)
		}
		size = int64(len(obj))
	}
	snap := &manifest.Snapshot{
		Version: 2, ID: repository.NewSnapshotID(), JobID: jobID, Time: time.Now().UTC(), Host: "h", Path: "/srv",
		Mode: manifest.ModeFiles, SourceKind: manifest.KindDir, Size: int64(len(dirs)) * 4096, ChunkSize: 4096,
		Hash: "sha256", Compression: "zstd", Level: "fastest",
		Chunks: []manifest.Chunk{{Length: 4096, Hash: id.String(), StoredSize: size}},
		Files:  []manifest.Entry{{Path: ".", Type: manifest.TypeDir, Mode: 0o755}},
	}
	// 60 files a directory: each directory's listing is an object of its
	// own, not part of its parent's (manifest.DefaultTreeOptions).
	snap.Size = 0
	for _, d := range dirs {
		snap.Files = append(snap.Files, manifest.Entry{Path: d, Type: manifest.TypeDir, Mode: 0o755})
		for i := range 60 {
			snap.Files = append(snap.Files, manifest.Entry{Path: fmt.Sprintf("%s/f-%s-with-a-longish-name-%02d", d, d, i),
				Type: manifest.TypeFile, Mode: 0o644, Size: 64, Content: []manifest.Extent{{Chunk: 0, Offset: int64(64 * i), Length: 64}}})
			snap.Size += 64
		}
	}
	if err := r.repo.SaveSnapshot(ctx, snap); err != nil {
		r.t.Fatal(err)
	}
	return snap.ID
}

// TestPruneTreeSnapshots: the directory objects of files-mode snapshots
// are kept while a snapshot names them and deleted with the last one.
func TestPruneTreeSnapshots(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := t.Context()
	first := r.treeBackup("j1", "a", "b")  // root 1, a, b
	second := r.treeBackup("j2", "a", "c") // root 2, c; a is shared
	objects := func() int {
		n := 0
		for _, err := range r.st.List(ctx, repository.ChunksPrefix) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	if n := objects(); n != 6 { // chunk 1 and five directory objects
		t.Fatalf("%d objects among the chunks, want 6", n)
	}
	p, err := r.runner().Run(ctx, "p0", prune.Options{Shards: 4})
	if err != nil || p.Deleted != 0 {
		t.Fatalf("prune with every snapshot kept: %+v, %v; want nothing deleted", p, err)
	}
	if err := r.repo.ForgetSnapshot(ctx, first); err != nil {
		t.Fatal(err)
	}
	p, err = r.runner().Run(ctx, "p1", prune.Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	if p.Deleted != 2 || objects() != 4 { // root 1 and b
		t.Errorf("prune deleted %d objects, %d left; want 2 deleted (the forgotten root and b), 4 left", p.Deleted, objects())
	}
	s, err := r.repo.LoadSnapshot(ctx, second)
	if err != nil {
		t.Fatalf("the kept snapshot after the prune: %v", err)
	}
	if len(s.Files) != 1+2*61 || len(s.Trees) != 3 {
		t.Errorf("the kept snapshot has %d entries and %d directory objects, want %d and 3", len(s.Files), len(s.Trees), 1+2*61)
	}
	r.verifyAll()
}
