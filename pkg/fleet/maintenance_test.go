package fleet_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// setupFast is setupFleet with the prune protocol's timing scaled down
// (repository.FastTiming): every party of it runs in this one process,
// so they all agree on it.
func setupFast(t *testing.T, s3 storeurl.S3Options) *bundle {
	t.Helper()
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
	}, repository.OpenOptions{CreatePlaintext: true}).SetTiming(repository.FastTiming)
	f, err := fleet.Start(t.Context(), fleet.Config{Dir: t.TempDir(), Compressors: 2, Repos: repos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("fleet close: %v", err)
		}
	})
	return connect(t, f, repos)
}

// job reads job id's record.
func (b *bundle) job(t *testing.T, id string) *queue.Job {
	t.Helper()
	kv, err := b.js.KeyValue(t.Context(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var job queue.Job
	if err := queue.Decode(entry.Value(), &job); err != nil {
		t.Fatal(err)
	}
	return &job
}

func (b *bundle) prune(t *testing.T, repo string) *queue.Job {
	t.Helper()
	id := uuid.NewString()
	ev := b.do(t, queue.SubjectRequestPrune, &queue.PruneRequest{V: queue.MessageVersion, JobID: id, Repo: repo}, id)
	succeeded(t, ev, "prune")
	job := b.job(t, id)
	if p := job.Pruned; p == nil || p.Phase != repository.PhaseDone || p.Error != "" {
		t.Fatalf("prune ended as %+v, want done without error", p)
	}
	return job
}

func (b *bundle) check(t *testing.T, repo string) *queue.CheckReport {
	t.Helper()
	id := uuid.NewString()
	ev := b.do(t, queue.SubjectRequestCheck, &queue.CheckRequest{V: queue.MessageVersion, JobID: id, Repo: repo, ReadData: true}, id)
	succeeded(t, ev, "check")
	return b.job(t, id).Checked
}

// TestPruneBesideBackups: a prune runs while three backups write to the
// same MinIO repository, reusing chunks that only forgotten snapshots
// named, which the prune condemns. Nothing a backup names is lost: every
// snapshot restores its source byte for byte and a check that reads every
// chunk finds nothing wrong. Another prune then deletes what only the
// forgotten snapshots named.
func TestPruneBesideBackups(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	repo := "s3://" + m.NewBucket(t) + "/backups"
	b := setupFast(t, storeurl.S3Options{Endpoint: "http://" + m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	r, err := b.repos.Get(t.Context(), repo, true)
	if err != nil {
		t.Fatal(err)
	}

	const size, chunkSize = 4 << 20, 128 << 10
	dir := t.TempDir()
	var srcs []string
	for i := range 3 {
		src := filepath.Join(dir, "vol"+string(rune('a'+i))+".img")
		if err := volgen.WriteFile(t.Context(), src, size, volgen.Options{Seed: int64(40 + i), Mix: volgen.Mix{Random: 1}}); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
		succeeded(t, b.backup(t, src, repo, chunkSize), "first backup")
	}
	// Each source changes a little, and its first snapshot is forgotten:
	// most of the chunks the next backups will name are now named by no
	// snapshot.
	for i, src := range srcs {
		if err := volgen.WriteFile(t.Context(), filepath.Join(dir, "head"), 512<<10, volgen.Options{Seed: int64(50 + i), Mix: volgen.Mix{Random: 1}}); err != nil {
			t.Fatal(err)
		}
		head, err := os.ReadFile(filepath.Join(dir, "head"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(src, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(head, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	old, err := r.SnapshotIDs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range old {
		if err := r.ForgetSnapshot(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		latest  = make(map[string]string) // source -> snapshot
		pruned  *queue.Job
		backups = make(chan struct{})
	)
	wg.Go(func() {
		<-backups
		pruned = b.prune(t, repo)
	})
	for _, src := range srcs {
		wg.Go(func() {
			ev := b.backup(t, src, repo, chunkSize)
			if ev.State != queue.StateSucceeded {
				t.Errorf("backup of %s beside the prune: %s: %s", src, ev.State, ev.Error)
				return
			}
			mu.Lock()
			latest[src] = ev.SnapshotID
			mu.Unlock()
		})
	}
	close(backups)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	p := pruned.Pruned
	t.Logf("prune beside backups: %d chunks, %d condemned, %d deleted, %d kept", p.Chunks, p.Condemned, p.Deleted, p.Kept)
	if p.Condemned == 0 {
		t.Errorf("the prune condemned nothing, want the chunks of the forgotten snapshots: %+v", p)
	}

	verifyAll := func(why string) {
		t.Helper()
		for _, src := range srcs {
			out := filepath.Join(t.TempDir(), "out.img")
			succeeded(t, b.restore(t, repo, latest[src], out), why+": restore")
			if fileHash(t, out) != fileHash(t, src) {
				t.Errorf("%s: snapshot %s restores other bytes than %s", why, latest[src], src)
			}
		}
		rep := b.check(t, repo)
		if rep.Missing+rep.Damaged != 0 || len(rep.Unreadable) != 0 || rep.Snapshots != len(srcs) {
			t.Errorf("%s: check found %d missing, %d damaged, unreadable %q in %d snapshots; want nothing wrong in %d",
				why, rep.Missing, rep.Damaged, rep.Unreadable, rep.Snapshots, len(srcs))
		}
		if rep.Read != rep.Referenced {
			t.Errorf("%s: check read %d of %d chunks, want all", why, rep.Read, rep.Referenced)
		}
	}
	verifyAll("after the prune beside backups")

	// Nothing runs now: a prune deletes exactly what no snapshot names,
	// the chunks of the heads the sources had before.
	second := b.prune(t, repo).Pruned
	if second.Deleted != second.Condemned || second.Kept != 0 {
		t.Errorf("second prune: %+v, want every condemned chunk deleted", second)
	}
	rep := b.check(t, repo)
	if rep.Unreferenced != 0 || rep.Stored != rep.Referenced {
		t.Errorf("after the second prune: %d chunks stored, %d named, %d named by none; want only named ones", rep.Stored, rep.Referenced, rep.Unreferenced)
	}
	if got := p.Deleted + second.Deleted; got < 3*(512<<10)/chunkSize {
		t.Errorf("the prunes deleted %d chunks in all, want at least the %d only the old heads named", got, 3*(512<<10)/chunkSize)
	}
	verifyAll("after the second prune")
}
