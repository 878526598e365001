package fleet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// bundle is one fleet under test with a client connection.
type bundle struct {
	fleet *fleet.Fleet
	js    jetstream.JetStream
	repos *repository.Cache
}

func setup(t testing.TB, s3 storeurl.S3Options) *bundle {
	t.Helper()
	return setupFleet(t, s3, fleet.Config{})
}

// setupFleet is setup with the fleet's settings in cfg (its Dir and, when
// zero, Repos and Compressors are filled in).
func setupFleet(t testing.TB, s3 storeurl.S3Options, cfg fleet.Config) *bundle {
	t.Helper()
	if cfg.Repos == nil {
		cfg.Repos = repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
			return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
		}, repository.OpenOptions{CreatePlaintext: true})
	}
	cfg.Dir = t.TempDir()
	if cfg.Compressors == 0 {
		cfg.Compressors = 2
	}
	f, err := fleet.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("fleet close: %v", err)
		}
	})
	return connect(t, f, cfg.Repos)
}

// do submits a request and waits for the job's final event.
func (b *bundle) do(t testing.TB, subject string, req any, jobID string) *queue.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	if err := queue.Submit(ctx, b.js, subject, req, jobID); err != nil {
		t.Fatal(err)
	}
	ev, err := queue.Follow(ctx, b.js, jobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (b *bundle) backup(t testing.TB, src, repo string, chunkSize int64) *queue.Event {
	t.Helper()
	id := uuid.NewString()
	return b.do(t, queue.SubjectRequestBackup, &queue.BackupRequest{
		V: queue.MessageVersion, JobID: id, Source: queue.Endpoint{Host: b.fleet.Host(), Path: src},
		Repo: repo, ChunkSize: chunkSize,
	}, id)
}

func (b *bundle) restore(t testing.TB, repo, snap string, targets ...string) *queue.Event {
	t.Helper()
	id := uuid.NewString()
	req := &queue.RestoreRequest{V: queue.MessageVersion, JobID: id, Repo: repo, Snapshot: snap}
	for _, p := range targets {
		req.Targets = append(req.Targets, queue.Endpoint{Host: b.fleet.Host(), Path: p})
	}
	return b.do(t, queue.SubjectRequestRestore, req, id)
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func volumeSize(t *testing.T) int64 {
	if testing.Short() {
		return 32 << 20
	}
	return 256 << 20
}

// TestBackupRestore backs up a generated mixed volume through the fleet into
// a directory and into a real MinIO, restores it in parallel and compares.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), src, volumeSize(t)+12345, volgen.Options{Seed: 7}); err != nil {
		t.Fatal(err)
	}
	want := fileHash(t, src)

	repos := []struct {
		name string
		repo func(t *testing.T) (string, storeurl.S3Options)
	}{
		{"dir", func(t *testing.T) (string, storeurl.S3Options) {
			return filepath.Join(t.TempDir(), "repo"), storeurl.S3Options{}
		}},
		{"minio", func(t *testing.T) (string, storeurl.S3Options) {
			m := testenv.MinIO(t)
			return "s3://" + m.NewBucket(t) + "/backups", storeurl.S3Options{
				Endpoint: "http://" + m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
			}
		}},
	}
	for _, tt := range repos {
		t.Run(tt.name, func(t *testing.T) {
			repo, s3 := tt.repo(t)
			b := setup(t, s3)
			ev := b.backup(t, src, repo, 4<<20)
			if ev.State != queue.StateSucceeded {
				t.Fatalf("backup %s: %s", ev.State, ev.Error)
			}
			st := ev.Stats
			if st.SourceBytes != volumeSize(t)+12345 || st.ZeroChunks == 0 || st.StoredBytes >= st.SourceBytes {
				t.Fatalf("implausible stats %+v", st)
			}

			out1, out2 := filepath.Join(dir, tt.name+"-1.img"), filepath.Join(dir, tt.name+"-2.img")
			ev = b.restore(t, repo, ev.SnapshotID, out1, out2) // two targets, one job
			if ev.State != queue.StateSucceeded {
				t.Fatalf("restore %s: %s", ev.State, ev.Error)
			}
			for _, out := range []string{out1, out2} {
				if got := fileHash(t, out); got != want {
					t.Fatalf("%s differs from the source", out)
				}
			}

			// A second backup of the unchanged volume stores nothing new.
			ev = b.backup(t, src, repo, 4<<20)
			if ev.State != queue.StateSucceeded || ev.Stats.NewBytes != 0 {
				t.Fatalf("incremental backup: %s %s, new bytes %d", ev.State, ev.Error, ev.Stats.NewBytes)
			}
		})
	}
}

// TestSmallHoldWindow backs up through a reader that may hold only two
// chunks for the compressors, so that its readers wait for room most of
// the time, over both ways compressors fetch chunks, and checks that
// nothing is lost.
func TestSmallHoldWindow(t *testing.T) {
	for _, plane := range []fleet.DataPlane{fleet.DataHTTP, fleet.DataNATS} {
		t.Run(string(plane), func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "vol.img")
			if err := volgen.WriteFile(t.Context(), src, 24<<20+777, volgen.Options{Seed: 11}); err != nil {
				t.Fatal(err)
			}
			b := setupFleet(t, storeurl.S3Options{}, fleet.Config{MaxPayload: 1 << 20, MaxHeld: 1 << 20, Readers: 8, Compressors: 1, DataPlane: plane})
			repo := filepath.Join(dir, "repo")
			ev := b.backup(t, src, repo, 512<<10)
			if ev.State != queue.StateSucceeded {
				t.Fatalf("backup %s: %s", ev.State, ev.Error)
			}
			out := filepath.Join(dir, "out.img")
			if ev = b.restore(t, repo, ev.SnapshotID, out); ev.State != queue.StateSucceeded {
				t.Fatalf("restore %s: %s", ev.State, ev.Error)
			}
			if fileHash(t, out) != fileHash(t, src) {
				t.Fatal("restored volume differs from the source")
			}
		})
	}
}

// TestChunksLargerThanAMessage uses chunks sixteen times the NATS message
// limit, fetched through NATS in parts: nothing is staged anywhere, and
// the volume restores whole.
func TestChunksLargerThanAMessage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), src, 40<<20+3, volgen.Options{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	b := setupFleet(t, storeurl.S3Options{}, fleet.Config{MaxPayload: 1 << 20, DataPlane: fleet.DataNATS})
	repo := filepath.Join(dir, "repo")
	ev := b.backup(t, src, repo, 16<<20)
	if ev.State != queue.StateSucceeded {
		t.Fatalf("backup %s: %s", ev.State, ev.Error)
	}
	entries, err := os.ReadDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "staging" {
			t.Errorf("the repository holds a staging area: raw chunks went through it")
		}
	}
	out := filepath.Join(dir, "out.img")
	if ev = b.restore(t, repo, "latest", out); ev.State != queue.StateSucceeded {
		t.Fatalf("restore %s: %s", ev.State, ev.Error)
	}
	a, _ := os.ReadFile(src)
	c, _ := os.ReadFile(out)
	if !bytes.Equal(a, c) {
		t.Fatal("restored volume differs")
	}
}

// TestIncremental changes one chunk between backups: only that chunk is
// stored anew, and each snapshot restores to the volume it was taken of.
func TestIncremental(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), src, 24<<20, volgen.Options{Seed: 11}); err != nil {
		t.Fatal(err)
	}
	original := fileHash(t, src)
	b := setup(t, storeurl.S3Options{})
	repo := filepath.Join(dir, "repo")
	first := b.backup(t, src, repo, 1<<20)
	if first.State != queue.StateSucceeded {
		t.Fatalf("first backup %s: %s", first.State, first.Error)
	}

	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed!"), 3<<20+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	changed := fileHash(t, src)

	second := b.backup(t, src, repo, 1<<20)
	if second.State != queue.StateSucceeded {
		t.Fatalf("second backup %s: %s", second.State, second.Error)
	}
	if second.Stats.NewChunks != 1 {
		t.Fatalf("second backup stored %d new chunks, want 1 (stats %+v)", second.Stats.NewChunks, second.Stats)
	}
	for _, tt := range []struct {
		snap string
		want [32]byte
	}{{first.SnapshotID, original}, {second.SnapshotID, changed}} {
		out := filepath.Join(dir, tt.snap+".img")
		if ev := b.restore(t, repo, tt.snap, out); ev.State != queue.StateSucceeded {
			t.Fatalf("restore %s: %s", ev.State, ev.Error)
		}
		if fileHash(t, out) != tt.want {
			t.Fatalf("snapshot %s restored to the wrong bytes", tt.snap)
		}
	}
}
