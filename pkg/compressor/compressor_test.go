package compressor_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// testDeadline bounds any single wait.
const testDeadline = 60 * time.Second

// bundle is a compressor with one worker on an embedded broker, a job whose
// repository is a bucket in a MinIO server of its own, and the test's view
// of the job's completions and of the compressor's log.
type bundle struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	minio *testenv.MinIOServer
	repo  *repository.Repository
	job   *queue.Job
	done  *nats.Subscription
	log   *testenv.LogBuffer
	comp  *compressor.Compressor
}

func setup(t *testing.T, storeTimeout time.Duration) *bundle {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a MinIO server")
	}
	m := testenv.MinIO(t)
	br, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Shutdown)
	connect := func(name string) *nats.Conn {
		nc, err := br.Connect(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nc := connect("test")
	b := &bundle{minio: m, log: &testenv.LogBuffer{}}
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := queue.Setup(t.Context(), b.js, queue.StreamConfig{MaxPayload: int32(nc.MaxPayload())}); err != nil {
		t.Fatal(err)
	}
	if b.kv, err = b.js.KeyValue(t.Context(), queue.BucketJobs); err != nil {
		t.Fatal(err)
	}

	// The repository and the job's record, as the coordinator makes them.
	s3 := storeurl.S3Options{Endpoint: "http://" + m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Region: "us-east-1"}
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
	})
	repoName := "s3://" + m.NewBucket(t) + "/repo"
	if b.repo, err = repos.Get(t.Context(), repoName, true); err != nil {
		t.Fatal(err)
	}
	b.job = &queue.Job{
		V: queue.MessageVersion, ID: "job1", Kind: queue.KindBackup, State: queue.StateRunning,
		Backup: &queue.BackupRequest{V: queue.MessageVersion, JobID: "job1", Repo: repoName, Level: "fastest"},
	}
	b.saveJob(t)
	if b.done, err = nc.SubscribeSync(queue.DoneSubject(b.job.ID)); err != nil {
		t.Fatal(err)
	}

	// The compressor opens the repository itself, at its first chunk.
	compRepos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
	})
	c, err := compressor.New(connect("compressor"), compressor.Config{
		Name: "c1", Workers: 1, Repos: compRepos, StoreTimeout: storeTimeout,
		Logger: slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.comp = c
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("compressor: %v", err)
			}
		case <-time.After(testDeadline):
			t.Errorf("compressor did not stop")
		}
		if t.Failed() {
			t.Logf("compressor log:\n%s", b.log.String())
		}
	})
	return b
}

func (b *bundle) saveJob(t *testing.T) {
	t.Helper()
	if _, err := b.kv.Put(t.Context(), b.job.ID, queue.Encode(b.job)); err != nil {
		t.Fatal(err)
	}
}

// publishChunk publishes a raw chunk of random bytes as chunk 0 of the job
// and returns its ID.
func (b *bundle) publishChunk(t *testing.T) chunk.ID {
	t.Helper()
	data := make([]byte, 1<<20)
	rand.Read(data)
	msg := nats.NewMsg(queue.RawSubject(b.job.ID))
	msg.Data = data
	msg.Header.Set(queue.HeaderJob, b.job.ID)
	msg.Header.Set(queue.HeaderIndex, "0")
	msg.Header.Set(queue.HeaderLength, strconv.Itoa(len(data)))
	if _, err := b.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	return chunk.Sum(data)
}

// nextDone waits for the job's next completion.
func (b *bundle) nextDone(t *testing.T) *queue.Done {
	t.Helper()
	msg, err := b.done.NextMsg(testDeadline)
	if err != nil {
		t.Fatalf("no completion within %s: %v", testDeadline, err)
	}
	var d queue.Done
	if err := queue.Decode(msg.Data, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// waitLog waits until the compressor has logged a line containing s.
func (b *bundle) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !strings.Contains(b.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the compressor did not log %q within %s", s, testDeadline)
		}
		time.Sleep(20 * time.Millisecond) // polling a log, not synchronisation
	}
}

func TestStoreRetriedUntilRepositoryReturns(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	b.minio.Stop()
	id := b.publishChunk(t)
	b.waitLog(t, "repository unavailable; retrying")
	b.minio.Start(t)

	d := b.nextDone(t)
	if d.Error != "" || !d.New || d.Hash != id.String() {
		t.Fatalf("completion %+v, want chunk %s newly stored", d, id)
	}
	if st, err := b.repo.StatChunk(t.Context(), id); err != nil || st.State != repository.ChunkIntact {
		t.Errorf("chunk %s not in the repository after its completion: %v", id, err)
	}
	b.waitLog(t, "repository reachable again")
	// The worker retried in place: the outage spent no delivery.
	cons, err := b.js.Consumer(t.Context(), queue.StreamRaw, queue.ConsumerCompressors)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("%d raw messages were redelivered during the outage, want 0", info.NumRedelivered)
	}
}

// TestChunkInFlightWhileAnotherWaitsForStore checks that a worker's CPU is
// not held by a chunk waiting for the repository: with one worker and the
// repository away, a second chunk is hashed and reaches the store too, and
// both are stored once it returns.
func TestChunkInFlightWhileAnotherWaitsForStore(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	b.minio.Stop()
	errs := make(chan error, 2)
	var ids []chunk.ID
	for index := range 2 {
		data := make([]byte, 1<<20)
		rand.Read(data)
		ids = append(ids, chunk.Sum(data))
		go func() { errs <- b.comp.Handoff(t.Context(), b.job.ID, index, data) }()
	}
	for index := range 2 {
		b.waitLog(t, "index="+strconv.Itoa(index)+" repo="+b.job.Backup.Repo) // retrying, as nothing was stored
	}
	b.minio.Start(t)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Handoff: %v", err)
		}
	}
	for _, id := range ids {
		if st, err := b.repo.StatChunk(t.Context(), id); err != nil || st.State != repository.ChunkIntact {
			t.Errorf("chunk %s not in the repository: %v", id, err)
		}
	}
}

func TestStoreTimeoutFailsChunk(t *testing.T) {
	t.Parallel()
	const limit = 2 * time.Second
	b := setup(t, limit)
	b.minio.Stop()
	start := time.Now()
	b.publishChunk(t)

	d := b.nextDone(t)
	elapsed := time.Since(start)
	t.Logf("completion after %s: %s", elapsed.Round(time.Millisecond), d.Error)
	for _, want := range []string{"repository " + b.job.Backup.Repo + " unavailable for", "store timeout (2s)", "connection refused"} {
		if !strings.Contains(d.Error, want) {
			t.Errorf("completion error %q does not say %q", d.Error, want)
		}
	}
	if elapsed < limit {
		t.Errorf("the chunk failed after %s, before the store timeout of %s", elapsed, limit)
	}
}

func TestStoreRetryStopsWhenJobEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	b.minio.Stop()
	b.publishChunk(t)
	b.waitLog(t, "repository unavailable; retrying")

	b.job.State = queue.StateCancelled
	b.saveJob(t)
	start := time.Now()
	b.waitLog(t, "the job has ended")
	t.Logf("the worker gave up %s after the job was cancelled", time.Since(start).Round(time.Millisecond))
	if msg, err := b.done.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a completion was published for the cancelled job: %s", msg.Data)
	}
}

// TestHandoff stores chunks handed over in memory, as a reader in the same
// process does: stored and completed before Handoff returns, refused for a
// job that is unknown or has ended, and failing the job (a completion with
// the error) when the repository stays away past the store timeout.
func TestHandoff(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	data := make([]byte, 1<<20)
	rand.Read(data)
	id := chunk.Sum(data)
	if err := b.comp.Handoff(t.Context(), b.job.ID, 3, data); err != nil {
		t.Fatalf("Handoff: %v", err)
	}
	if st, err := b.repo.StatChunk(t.Context(), id); err != nil || st.State != repository.ChunkIntact {
		t.Fatalf("chunk %s not in the repository when Handoff returned: %v", id, err)
	}
	d := b.nextDone(t)
	if d.Error != "" || !d.New || d.Index != 3 || d.Hash != id.String() || d.Length != int64(len(data)) {
		t.Fatalf("completion %+v, want chunk 3 (%s) newly stored", d, id)
	}

	// The same chunk again is deduplicated.
	if err := b.comp.Handoff(t.Context(), b.job.ID, 4, data); err != nil {
		t.Fatalf("second Handoff: %v", err)
	}
	if d := b.nextDone(t); d.New || d.Index != 4 || d.Hash != id.String() {
		t.Fatalf("completion %+v, want chunk 4 deduplicated", d)
	}

	// A job the compressor has not seen yet, already cancelled (a job's
	// state is cached for a moment, so a running job's cancellation is
	// noticed a little later; TestStoreRetryStopsWhenJobEnds covers that).
	cancelled := *b.job
	cancelled.ID, cancelled.State = "job2", queue.StateCancelled
	if _, err := b.kv.Put(t.Context(), cancelled.ID, queue.Encode(&cancelled)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, job string }{
		{"unknown job", "nope"},
		{"cancelled job", cancelled.ID},
	} {
		sub, err := b.js.Conn().SubscribeSync(queue.DoneSubject(tt.job))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		err = b.comp.Handoff(t.Context(), tt.job, 5, data)
		if err == nil || !queue.IsPermanent(err) {
			t.Errorf("%s: Handoff = %v, want a permanent error", tt.name, err)
		}
		if msg, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			t.Errorf("%s: a completion was published: %s", tt.name, msg.Data)
		}
	}
}

func TestHandoffStoreTimeoutFailsJob(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second)
	b.minio.Stop()
	err := b.comp.Handoff(t.Context(), b.job.ID, 0, []byte("raw bytes that cannot be stored"))
	if err == nil || !queue.IsPermanent(err) || !strings.Contains(err.Error(), b.job.Backup.Repo) {
		t.Fatalf("Handoff = %v, want a permanent error naming the repository", err)
	}
	if d := b.nextDone(t); !strings.Contains(d.Error, "store timeout") {
		t.Errorf("completion error %q, want the store timeout", d.Error)
	}
}
