package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// TestCancelledBeforeRunningEnds: a job cancelled while its running state
// is being saved (the cancel found it registered, not yet running) still
// ends cancelled and recorded, for the cancel waits for a final state; it
// once stayed queued for good.
func TestCancelledBeforeRunningEnds(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.Connect("coordinator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
	}, repository.OpenOptions{CreatePlaintext: true})
	c, err := New(nc, Config{Repos: repos})
	if err != nil {
		t.Fatal(err)
	}
	if err := queue.Setup(t.Context(), c.js, c.cfg.Streams); err != nil {
		t.Fatal(err)
	}
	if c.kv, err = c.js.KeyValue(t.Context(), queue.BucketJobs); err != nil {
		t.Fatal(err)
	}
	job := &queue.Job{
		V: queue.MessageVersion, ID: "cancelled-early", Kind: queue.KindBackup, State: queue.StateQueued,
		Created:    time.Now().UTC(),
		Backup:     &queue.BackupRequest{V: queue.MessageVersion, JobID: "cancelled-early", Repo: t.TempDir()},
		SnapshotID: "0123456789abcdef0123456789abcdef",
	}
	if err := c.saveJob(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errCancelled)
	c.run(ctx, job)

	saved, err := c.loadJob(t.Context(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if saved.State != queue.StateCancelled || saved.SnapshotID != "" || saved.Finished.IsZero() {
		t.Errorf("job record after an early cancel: state %s, snapshot %q, finished %v; want cancelled, none, set",
			saved.State, saved.SnapshotID, saved.Finished)
	}
}
