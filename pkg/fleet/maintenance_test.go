package fleet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
	"github.com/bulkbackup/bulkbackup/pkg/verify"
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

// setupEncrypted starts a fleet (setupFleet, with Repos and WorkerRepos
// filled in) around a new encrypted directory repository:
// the coordinator holds the write key with metadata, the reader and the
// compressors the one without. It returns the repository open with all of
// its keys, and its path.
func setupEncrypted(t *testing.T, cfg fleet.Config) (*bundle, *repository.Repository, string) {
	t.Helper()
	repoDir := filepath.Join(t.TempDir(), "repo")
	open := func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
	}
	st, err := open(t.Context(), repoDir, true)
	if err != nil {
		t.Fatal(err)
	}
	full, keys := testenv.EncryptedRepository(t, st)
	holding := func(write *keyring.WriteKey) *repository.Cache {
		return repository.NewCache(open, repository.OpenOptions{Keys: func(repository.Config) (repository.Credentials, error) {
			return repository.Credentials{Write: write}, nil
		}}).SetTiming(repository.FastTiming)
	}
	cfg.Repos, cfg.WorkerRepos = holding(&keys.WriteKey), holding(keys.WithoutMeta())
	return setupFleet(t, storeurl.S3Options{}, cfg), full, repoDir
}

// TestPruneAndCheckEncrypted: in an encrypted repository, whose manifests
// the compressors cannot read (their write key has no metadata root), a
// prune deletes what only a forgotten snapshot named and a check of the
// references finds the kept snapshot whole: the coordinator runs the
// steps that read manifests. The kept snapshot then verifies with the
// repository's keys, and a check that would read the data is refused,
// naming why.
func TestPruneAndCheckEncrypted(t *testing.T) {
	t.Parallel()
	b, full, repoDir := setupEncrypted(t, fleet.Config{})
	repos := b.repos

	const size, chunkSize = 2 << 20, 128 << 10
	dir := t.TempDir()
	var snaps []string
	for i := range 2 {
		src := filepath.Join(dir, fmt.Sprintf("vol%d.img", i))
		if err := volgen.WriteFile(t.Context(), src, size, volgen.Options{Seed: int64(80 + i), Mix: volgen.Mix{Random: 1}}); err != nil {
			t.Fatal(err)
		}
		ev := b.backup(t, src, repoDir, chunkSize)
		succeeded(t, ev, "backup")
		snaps = append(snaps, ev.SnapshotID)
	}
	r, err := repos.Get(t.Context(), repoDir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ForgetSnapshot(t.Context(), snaps[0]); err != nil {
		t.Fatal(err)
	}

	p := b.prune(t, repoDir).Pruned
	if want := int64(size / chunkSize); p.Deleted != want || p.Condemned != want {
		t.Errorf("prune: condemned %d, deleted %d chunks; want the forgotten snapshot's %d", p.Condemned, p.Deleted, want)
	}
	id := uuid.NewString()
	ev := b.do(t, queue.SubjectRequestCheck, &queue.CheckRequest{V: queue.MessageVersion, JobID: id, Repo: repoDir}, id)
	succeeded(t, ev, "check")
	rep := b.job(t, id).Checked
	if rep.Snapshots != 1 || rep.Referenced != int64(size/chunkSize) || rep.Stored != rep.Referenced || rep.Missing+rep.Damaged != 0 {
		t.Errorf("check after the prune: %d snapshots, %d chunks named, %d stored, %d missing, %d damaged; want 1 snapshot whose %d chunks are all stored",
			rep.Snapshots, rep.Referenced, rep.Stored, rep.Missing, rep.Damaged, size/chunkSize)
	}
	snap, err := full.LoadSnapshot(t.Context(), snaps[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Snapshot(t.Context(), full, snap, verify.Options{Compare: filepath.Join(dir, "vol1.img")}); err != nil {
		t.Errorf("the kept snapshot after the prune: %v", err)
	}

	id = uuid.NewString()
	ev = b.do(t, queue.SubjectRequestCheck, &queue.CheckRequest{V: queue.MessageVersion, JobID: id, Repo: repoDir, ReadData: true}, id)
	if ev.State != queue.StateFailed || !strings.Contains(ev.Error, "check --read-data opens chunks") {
		t.Errorf("check --read-data of an encrypted repository ended %s (%q), want it refused, saying why", ev.State, ev.Error)
	}
}

// TestEncryptedHandOver backs up into an encrypted repository through the
// readers' data server and through NATS (in parts smaller than a chunk):
// the compressors open what the reader sealed, and the snapshot verifies
// against its source with the repository's keys.
func TestEncryptedHandOver(t *testing.T) {
	t.Parallel()
	for _, plane := range []fleet.DataPlane{fleet.DataHTTP, fleet.DataNATS} {
		t.Run(string(plane), func(t *testing.T) {
			t.Parallel()
			b, full, repoDir := setupEncrypted(t, fleet.Config{DataPlane: plane, MaxPayload: 1 << 20})
			src := filepath.Join(t.TempDir(), "vol.img")
			if err := volgen.WriteFile(t.Context(), src, 6<<20+5, volgen.Options{Seed: 9}); err != nil {
				t.Fatal(err)
			}
			ev := b.backup(t, src, repoDir, 2<<20)
			succeeded(t, ev, "backup")
			snap, err := full.LoadSnapshot(t.Context(), ev.SnapshotID)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := verify.Snapshot(t.Context(), full, snap, verify.Options{Compare: src})
			if err != nil {
				t.Fatalf("verify against the source: %v", err)
			}
			if rep.ComparedBytes != 6<<20+5 {
				t.Errorf("verify compared %d bytes, want %d", rep.ComparedBytes, 6<<20+5)
			}
		})
	}
}
