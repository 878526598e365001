package compressor_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// testDeadline bounds any single wait.
const testDeadline = 60 * time.Second

// testHost is the host of the chunks' reader.
const testHost = "h1"

// bundle is a compressor with one worker on an embedded broker (messages
// of at most 1 MiB), a job whose repository is a bucket in a MinIO server
// of its own, a stand-in for the reader that holds the job's chunks (over
// NATS and HTTP), and the test's view of the job's completions and of the
// compressor's log.
type bundle struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	minio  *testenv.MinIOServer
	repo   *repository.Repository
	job    *queue.Job
	done   *nats.Subscription
	log    *testenv.LogBuffer
	comp   *compressor.Compressor
	holder *holder
	br     *broker.Broker
	// s3 and storeTimeout are how compressors reach the job's repository.
	s3           storeurl.S3Options
	storeTimeout time.Duration
}

func setup(t *testing.T, storeTimeout time.Duration) *bundle {
	t.Helper()
	return setupWith(t, storeTimeout, false)
}

// setupWith is setup, without the compressor when noCompressor: the test
// starts its own (startCompressor).
func setupWith(t *testing.T, storeTimeout time.Duration, noCompressor bool) *bundle {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a MinIO server")
	}
	m := testenv.MinIO(t)
	br, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true, MaxPayload: 1 << 20})
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
	b := &bundle{minio: m, log: &testenv.LogBuffer{}, br: br}
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := queue.Setup(t.Context(), b.js, queue.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if b.kv, err = b.js.KeyValue(t.Context(), queue.BucketJobs); err != nil {
		t.Fatal(err)
	}

	// The repository and the job's record, as the coordinator makes them.
	s3 := storeurl.S3Options{Endpoint: "http://" + m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Region: "us-east-1"}
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
	}, repository.OpenOptions{CreatePlaintext: true})
	repoName := "s3://" + m.NewBucket(t) + "/repo"
	if b.repo, err = repos.Get(t.Context(), repoName, true); err != nil {
		t.Fatal(err)
	}
	b.job = &queue.Job{
		V: queue.MessageVersion, ID: "job1", Kind: queue.KindBackup, State: queue.StateRunning,
		Backup: &queue.BackupRequest{V: queue.MessageVersion, JobID: "job1", Repo: repoName, Level: "fastest"},
	}
	b.saveJob(t)
	if b.done, err = nc.SubscribeSync(queue.DoneFilter(b.job.ID)); err != nil {
		t.Fatal(err)
	}
	b.holder = newHolder(t, connect("reader"))

	b.s3, b.storeTimeout = s3, storeTimeout
	if !noCompressor {
		b.comp = b.startCompressor(t, "c1", s3, false)
	}
	return b
}

// startCompressor runs a compressor with one worker, logging into b.log,
// that opens the job's repository itself, at its first chunk, through the
// retrying store a compressor process sets up, with the credentials in s3.
func (b *bundle) startCompressor(t *testing.T, name string, s3 storeurl.S3Options, assist bool) *compressor.Compressor {
	t.Helper()
	compRepos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return retry.Open(ctx, retry.Config{MaxElapsed: b.storeTimeout}, repo, func(ctx context.Context) (store.Store, error) {
			return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
		})
	}, repository.OpenOptions{CreatePlaintext: true})
	nc, err := b.br.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := compressor.New(nc, compressor.Config{
		Name: name, Workers: 1, Repos: compRepos, Assist: assist,
		Logger: slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("compressor", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("compressor %s: %v", name, err)
			}
		case <-time.After(testDeadline):
			t.Errorf("compressor %s did not stop", name)
		}
		if t.Failed() {
			t.Logf("compressor %s log:\n%s", name, b.log.String())
		}
	})
	return c
}

func (b *bundle) saveJob(t *testing.T) {
	t.Helper()
	if _, err := b.kv.Put(t.Context(), b.job.ID, queue.Encode(b.job)); err != nil {
		t.Fatal(err)
	}
}

// announce has the holder hold n random bytes as chunk index of the job,
// publishes its descriptor (with direct as its data server's URL, "" for
// none) and returns the chunk's ID.
func (b *bundle) announce(t *testing.T, index, n int, direct string) chunk.ID {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	read := queue.ReadChunk{V: queue.WorkVersion, JobID: b.job.ID, Index: index, Length: int64(n), Repo: b.job.Backup.Repo, Path: "/dev/vol"}
	b.holder.hold(read, data)
	ready := &queue.ChunkReady{
		V: queue.WorkVersion, JobID: b.job.ID, Index: index, Length: int64(n), Host: testHost, Read: read, Direct: direct, Token: "t0k3n",
		CRC32C: queue.ChunkCRC(data),
	}
	if _, err := b.js.Publish(t.Context(), queue.ReadySubject(b.job.ID), queue.Encode(ready)); err != nil {
		t.Fatal(err)
	}
	return chunk.Sum(data)
}

// nextDone waits for the job's next completion: a *queue.ChunkDone or a
// *queue.WorkFailed.
func (b *bundle) nextDone(t *testing.T) any {
	t.Helper()
	msg, err := b.done.NextMsg(testDeadline)
	if err != nil {
		t.Fatalf("no completion within %s: %v", testDeadline, err)
	}
	d, err := queue.DecodeDone(msg.Subject, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// nextChunkDone waits for the job's next completion, which must be a
// chunk's.
func (b *bundle) nextChunkDone(t *testing.T) *queue.ChunkDone {
	t.Helper()
	switch d := b.nextDone(t).(type) {
	case *queue.ChunkDone:
		return d
	case *queue.WorkFailed:
		t.Fatalf("chunk %d failed: %s (%s)", d.Index, d.Message, d.Code)
	default:
		t.Fatalf("unexpected completion %T", d)
	}
	return nil
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

// holder stands in for the reader holding a job's chunks: it answers
// FetchRequests over NATS on testHost's fetch subject and on an HTTP data
// server, as a reader does, counting both, and fails the first fetches
// when told to.
type holder struct {
	mu       sync.Mutex
	chunks   map[int][]byte
	failNext []*queue.Failure // answers for the next NATS fetches
	http     *httptest.Server
	// overNATS and overHTTP count fetch requests answered.
	overNATS, overHTTP atomic.Int64
}

func newHolder(t *testing.T, nc *nats.Conn) *holder {
	h := &holder{chunks: make(map[int][]byte)}
	sub, err := nc.QueueSubscribe(queue.FetchSubject(testHost), queue.ReaderQueueGroup, func(m *nats.Msg) {
		h.overNATS.Add(1)
		var req queue.FetchRequest
		resp := nats.NewMsg(m.Reply)
		data, f := h.part(m.Data, &req)
		if f != nil {
			resp.Header.Set(queue.HeaderCode, string(f.Code))
			resp.Header.Set(queue.HeaderError, f.Message)
		}
		resp.Data = data
		_ = m.RespondMsg(resp)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	h.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.overHTTP.Add(1)
		body, _ := io.ReadAll(r.Body)
		var req queue.FetchRequest
		data, f := h.part(body, &req)
		if f == nil && req.Token != "t0k3n" {
			f = queue.Failed(queue.CodeDenied, "bad token")
		}
		if f != nil {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]string{"code": string(f.Code), "error": f.Message})
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(h.http.Close)
	return h
}

func (h *holder) hold(read queue.ReadChunk, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.chunks[read.Index] = data
}

// part decodes a FetchRequest into req and returns the bytes it asks for,
// or the failure to answer with.
func (h *holder) part(body []byte, req *queue.FetchRequest) ([]byte, *queue.Failure) {
	if err := queue.Decode(body, req); err != nil {
		return nil, queue.Failed(queue.CodeInvalid, "%v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failNext) > 0 {
		f := h.failNext[0]
		h.failNext = h.failNext[1:]
		return nil, f
	}
	data, ok := h.chunks[req.Index]
	if !ok || req.Offset < 0 || req.Offset+req.Length > int64(len(data)) {
		return nil, queue.Failed(queue.CodeInvalid, "no such part")
	}
	return data[req.Offset : req.Offset+req.Length], nil
}

// url is the holder's data server's fetch URL.
func (h *holder) url() string { return h.http.URL + "/v1/fetch" }

func (b *bundle) checkStored(t *testing.T, d *queue.ChunkDone, id chunk.ID, index int) {
	t.Helper()
	if d.Index != index || d.Hash != id.String() || !d.New {
		t.Fatalf("completion %+v, want chunk %d (%s) newly stored", d, index, id)
	}
	if st, err := b.repo.StatChunk(t.Context(), id); err != nil || st.State != repository.ChunkIntact || st.Size != d.StoredSize {
		t.Errorf("chunk %s in the repository: %+v, %v; want intact, %d bytes", id, st, err, d.StoredSize)
	}
}

// TestFetch stores announced chunks fetched each way a reader serves them.
func TestFetch(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	tests := []struct {
		name              string
		size              int
		direct            string // the descriptor's data server URL
		wantHTTP, wantNAT int64  // fetch requests each way
	}{
		{"direct", 3 << 20, b.holder.url(), 1, 0},
		{"over NATS, in parts larger than a message allows", 3<<20 + 1, "", 0, 4},
		{"data server unreachable: over NATS", 100 << 10, "http://127.0.0.1:1/v1/fetch", 0, 1},
		{"token refused (another server at that address): over NATS", 100 << 10, b.holder.http.URL + "/v1/fetch?other", 1, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			http0, nats0 := b.holder.overHTTP.Load(), b.holder.overNATS.Load()
			// "?other": the holder's server, but the descriptor's token
			// is one it refuses, as another process at that address would.
			direct, other := strings.CutSuffix(tt.direct, "?other")
			id := b.announceWith(t, i, tt.size, direct, other)
			b.checkStored(t, b.nextChunkDone(t), id, i)
			if got := b.holder.overHTTP.Load() - http0; got != tt.wantHTTP {
				t.Errorf("%d fetches over HTTP, want %d", got, tt.wantHTTP)
			}
			if got := b.holder.overNATS.Load() - nats0; got != tt.wantNAT {
				t.Errorf("%d fetches over NATS, want %d", got, tt.wantNAT)
			}
		})
	}
}

// announceWith is announce, with a token the holder's data server refuses
// when badToken.
func (b *bundle) announceWith(t *testing.T, index, n int, direct string, badToken bool) chunk.ID {
	t.Helper()
	if !badToken {
		return b.announce(t, index, n, direct)
	}
	data := make([]byte, n)
	rand.Read(data)
	read := queue.ReadChunk{V: queue.WorkVersion, JobID: b.job.ID, Index: index, Length: int64(n), Repo: b.job.Backup.Repo, Path: "/dev/vol"}
	b.holder.hold(read, data)
	ready := &queue.ChunkReady{V: queue.WorkVersion, JobID: b.job.ID, Index: index, Length: int64(n), Host: testHost, Read: read, Direct: direct, Token: "wrong"}
	if _, err := b.js.Publish(t.Context(), queue.ReadySubject(b.job.ID), queue.Encode(ready)); err != nil {
		t.Fatal(err)
	}
	return chunk.Sum(data)
}

// TestFetchFailureRetried: a reader that cannot serve a chunk for a while
// (it failed to read it) has its descriptor retried, and the chunk stored
// once it can.
func TestFetchFailureRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	b.holder.mu.Lock()
	b.holder.failNext = []*queue.Failure{queue.Failed(queue.CodeSource, "read /dev/vol: input/output error")}
	b.holder.mu.Unlock()
	id := b.announce(t, 0, 64<<10, "")
	b.checkStored(t, b.nextChunkDone(t), id, 0)
	if n := b.holder.overNATS.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (the failed one, then the one that worked)", n)
	}
}

// TestFetchedBytesCheckedAgainstRead: bytes a reader serves that are not
// those it read (its buffer reused under the fetch, or damaged on the way)
// are refused, not stored as the chunk; the fetch is tried again and the
// chunk's right bytes stored, each way a chunk is fetched.
func TestFetchedBytesCheckedAgainstRead(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	for i, direct := range []string{b.holder.url(), ""} {
		good, bad := make([]byte, 200<<10), make([]byte, 200<<10)
		rand.Read(good)
		copy(bad, good)
		bad[1000] ^= 1 // another chunk's bytes, as far as the hash goes
		read := queue.ReadChunk{V: queue.WorkVersion, JobID: b.job.ID, Index: i, Length: int64(len(good)), Repo: b.job.Backup.Repo, Path: "/dev/vol"}
		b.holder.hold(read, bad)
		ready := &queue.ChunkReady{V: queue.WorkVersion, JobID: b.job.ID, Index: i, Length: read.Length, Host: testHost, Read: read,
			Direct: direct, Token: "t0k3n", CRC32C: queue.ChunkCRC(good)}
		fetches := func() int64 { return b.holder.overHTTP.Load() + b.holder.overNATS.Load() }
		before := fetches()
		if _, err := b.js.Publish(t.Context(), queue.ReadySubject(b.job.ID), queue.Encode(ready)); err != nil {
			t.Fatal(err)
		}
		b.waitLog(t, fmt.Sprintf("chunk %d of job %s from host %s: the bytes fetched have CRC32C", i, b.job.ID, testHost))
		if fetches() == before {
			t.Fatal("refused without a fetch")
		}
		b.holder.hold(read, good) // the reader serves the bytes it read
		b.checkStored(t, b.nextChunkDone(t), chunk.Sum(good), i)
		if st, err := b.repo.StatChunk(t.Context(), chunk.Sum(bad)); err != nil || st.State != repository.ChunkMissing {
			t.Errorf("the wrong bytes were stored: %+v, %v", st, err)
		}
	}
}

func TestStoreRetriedUntilRepositoryReturns(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	b.minio.Stop()
	id := b.announce(t, 0, 1<<20, b.holder.url())
	b.waitLog(t, "repository unavailable; retrying")
	b.minio.Start(t)

	b.checkStored(t, b.nextChunkDone(t), id, 0)
	b.waitLog(t, "repository reachable again")
	// The worker retried in place: the chunk was fetched once, the outage
	// spent no delivery.
	if n := b.holder.overHTTP.Load(); n != 1 {
		t.Errorf("the chunk was fetched %d times, want once", n)
	}
}

// TestChunkInFlightWhileAnotherWaitsForStore checks that a worker's CPU is
// not held by a chunk waiting for the repository: with one worker and the
// repository away, a second chunk is hashed and reaches the store too, and
// both are stored once it returns. Meanwhile, with both of the worker's
// slots taken, TryStore reports at once that it has no room.
func TestChunkInFlightWhileAnotherWaitsForStore(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	// A first chunk opens the repository: the two below then wait for its
	// store, not for its opening (which one chunk at a time does).
	if err := b.comp.Store(t.Context(), b.job.ID, 9, []byte("first")); err != nil {
		t.Fatal(err)
	}
	b.minio.Stop()
	errs := make(chan error, 2)
	var ids []chunk.ID
	for index := range 2 {
		data := make([]byte, 1<<20)
		rand.Read(data)
		ids = append(ids, chunk.Sum(data))
		go func() { errs <- b.comp.Store(t.Context(), b.job.ID, index, data) }()
	}
	for index := range 2 {
		b.waitLog(t, "index="+strconv.Itoa(index)+" repo="+b.job.Backup.Repo) // retrying, as nothing was stored
	}
	if stored, err := b.comp.TryStore(t.Context(), b.job.ID, 2, []byte("more")); stored || err != nil {
		t.Errorf("TryStore with every slot taken = %t, %v; want false, nil", stored, err)
	}
	b.minio.Start(t)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Store: %v", err)
		}
	}
	for _, id := range ids {
		if st, err := b.repo.StatChunk(t.Context(), id); err != nil || st.State != repository.ChunkIntact {
			t.Errorf("chunk %s not in the repository: %v", id, err)
		}
	}
}

// TestStoreTimeoutFailsChunk: a repository away for longer than the
// store's retry allows fails the chunk, and so the job, with an error that
// names the repository and why.
func TestStoreTimeoutFailsChunk(t *testing.T) {
	t.Parallel()
	const limit = 2 * time.Second
	b := setup(t, limit)
	b.minio.Stop()
	start := time.Now()
	b.announce(t, 0, 1<<20, b.holder.url())

	f, ok := b.nextDone(t).(*queue.WorkFailed)
	elapsed := time.Since(start)
	if !ok {
		t.Fatal("the chunk did not fail")
	}
	t.Logf("failure after %s: %s", elapsed.Round(time.Millisecond), f.Message)
	if f.Code != queue.CodeUnavailable || f.Op != queue.OpRead || f.Index != 0 {
		t.Errorf("failure %+v, want chunk 0's, code %s", f, queue.CodeUnavailable)
	}
	for _, want := range []string{"repository s3://", "unavailable for", "connection refused"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("failure %q does not say %q", f.Message, want)
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
	b.announce(t, 0, 1<<20, b.holder.url())
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

// TestStore stores chunks read in the same process: stored and completed
// before Store returns, deduplicated the second time, and refused for a job
// that is unknown or has ended.
func TestStore(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	data := make([]byte, 1<<20)
	rand.Read(data)
	id := chunk.Sum(data)
	if err := b.comp.Store(t.Context(), b.job.ID, 3, data); err != nil {
		t.Fatalf("Store: %v", err)
	}
	if st, err := b.repo.StatChunk(t.Context(), id); err != nil || st.State != repository.ChunkIntact {
		t.Fatalf("chunk %s not in the repository when Store returned: %v", id, err)
	}
	d := b.nextChunkDone(t)
	b.checkStored(t, d, id, 3)
	if d.Length != int64(len(data)) {
		t.Errorf("completion length %d, want %d", d.Length, len(data))
	}

	// The same chunk again is deduplicated.
	if stored, err := b.comp.TryStore(t.Context(), b.job.ID, 4, data); !stored || err != nil {
		t.Fatalf("TryStore with a free worker = %t, %v; want true, nil", stored, err)
	}
	if d := b.nextChunkDone(t); d.New || d.Index != 4 || d.Hash != id.String() {
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
		sub, err := b.js.Conn().SubscribeSync(queue.DoneFilter(tt.job))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		err = b.comp.Store(t.Context(), tt.job, 5, data)
		if err == nil || !queue.IsPermanent(err) {
			t.Errorf("%s: Store = %v, want a permanent error", tt.name, err)
		}
		if msg, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			t.Errorf("%s: a completion was published: %s", tt.name, msg.Data)
		}
	}
}

func TestStoreTimeoutFailsJob(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second)
	b.minio.Stop()
	err := b.comp.Store(t.Context(), b.job.ID, 0, []byte("raw bytes that cannot be stored"))
	if err == nil || !queue.IsPermanent(err) || !strings.Contains(err.Error(), b.job.Backup.Repo) {
		t.Fatalf("Store = %v, want a permanent error naming the repository", err)
	}
	var ue *retry.UnavailableError
	if !errors.As(err, &ue) {
		t.Errorf("Store = %v, want a retry.UnavailableError in it", err)
	}
	if f, ok := b.nextDone(t).(*queue.WorkFailed); !ok || f.Code != queue.CodeUnavailable {
		t.Errorf("completion %+v, want a failure with code %s", f, queue.CodeUnavailable)
	}
}

// TestAssistLeavesRefusedRepositoryToFleet: a reader's own compressor
// (Assist) whose credentials the repository refuses hands a chunk of the
// shared queue back instead of failing the job, and a compressor that can
// store it does.
func TestAssistLeavesRefusedRepositoryToFleet(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 5*time.Second, true)
	wrong := b.s3
	wrong.SecretKey = "not-the-secret"
	b.startCompressor(t, "reader-h1", wrong, true)
	id := b.announce(t, 0, 256<<10, b.holder.url())
	b.waitLog(t, "cannot store into the repository from here")
	if msg, err := b.done.NextMsg(500 * time.Millisecond); err == nil {
		d, _ := queue.DecodeDone(msg.Subject, msg.Data)
		t.Fatalf("the assisting compressor published %+v; want nothing until another compressor stores the chunk", d)
	}
	b.startCompressor(t, "c1", b.s3, false)
	b.checkStored(t, b.nextChunkDone(t), id, 0)
}

// TestSealedMismatchRefused: a chunk announced as sealed for a repository
// that is not encrypted (a job planned for another repository of the same
// name) fails its job, naming why, and nothing is fetched: the compressor
// takes raw bytes only for what it knows to be plaintext.
func TestSealedMismatchRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Minute)
	read := queue.ReadChunk{V: queue.WorkVersion, JobID: b.job.ID, Index: 0, Length: 100, Repo: b.job.Backup.Repo, Path: "/dev/vol", Sealed: true}
	b.holder.hold(read, make([]byte, 100))
	ready := &queue.ChunkReady{V: queue.WorkVersion, JobID: b.job.ID, Index: 0, Length: 100, Host: testHost, Read: read, Direct: b.holder.url(), Token: "t0k3n"}
	if _, err := b.js.Publish(t.Context(), queue.ReadySubject(b.job.ID), queue.Encode(ready)); err != nil {
		t.Fatal(err)
	}
	f, ok := b.nextDone(t).(*queue.WorkFailed)
	if !ok || !strings.Contains(f.Message, "sealed=true") || !strings.Contains(f.Message, "encrypted=false") {
		t.Fatalf("completion %+v, want a failure naming the mismatch", f)
	}
	if n := b.holder.overHTTP.Load() + b.holder.overNATS.Load(); n != 0 {
		t.Errorf("%d fetches, want none", n)
	}
}
