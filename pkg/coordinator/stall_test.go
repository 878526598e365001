package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// TestStallNamesWhatIsMissing runs backups that cannot progress, with a
// reader but no compressor, and checks that the stall error says what is
// missing: the compressors while the repository answers, the repository
// once its server is gone.
func TestStallNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a MinIO server")
	}
	m := testenv.MinIO(t)
	s3 := storeurl.S3Options{Endpoint: "http://" + m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Region: "us-east-1"}
	const stall = 2 * time.Second
	b := setupWith(t, coordinator.Config{
		ReaderTimeout: readerTimeout, StallTimeout: stall, ProgressInterval: 100 * time.Millisecond,
		Repos: repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
			return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
		}, repository.OpenOptions{CreatePlaintext: true}),
	})
	b.startReader(t)
	repo := "s3://" + m.NewBucket(t) + "/repo"
	vol := writeVolume(t, 4<<20, 7)

	backup := func(t *testing.T, jobID, want string) *queue.Event {
		t.Helper()
		start := time.Now()
		if err := queue.Submit(t.Context(), b.js, queue.SubjectRequestBackup, &queue.BackupRequest{
			V: 1, JobID: jobID, Source: queue.Endpoint{Host: readerHost, Path: vol}, Repo: repo, ChunkSize: 1 << 20,
		}, jobID); err != nil {
			t.Fatal(err)
		}
		ev, _ := b.follow(t, jobID)
		t.Logf("job %s ended %s after %s: %s", jobID, ev.State, time.Since(start).Round(time.Millisecond), ev.Error)
		if ev.State != queue.StateFailed || !strings.Contains(ev.Error, want) {
			t.Fatalf("job ended %s (%s), want failed: %s", ev.State, ev.Error, want)
		}
		return ev
	}

	t.Run("repository answers", func(t *testing.T) {
		ev := backup(t, "no-compressors", "stalled: no progress for 2s")
		if want := "the reader and the repository answer: are the compressors running?"; !strings.Contains(ev.Error, want) {
			t.Errorf("error %q does not say %q", ev.Error, want)
		}
	})
	t.Run("repository gone", func(t *testing.T) {
		m.Stop() // the coordinator has the repository open since the first job
		// A backup registers in its repository before it reads anything
		// (docs/format.md section 10.2): with the repository gone it fails
		// at once, naming it, rather than stalling.
		ev := backup(t, "no-repository", "register backup no-repository in "+repo)
		if !strings.Contains(ev.Error, "unavailable") {
			t.Errorf("error %q does not say the repository is unavailable", ev.Error)
		}
		if strings.Contains(ev.Error, "are the compressors running") {
			t.Errorf("error %q blames the compressors", ev.Error)
		}
	})
}
