// Package compressor is the compressor service: stateless workers, scaled
// horizontally, that turn raw chunks into stored chunks.
//
// Each worker takes a chunk's descriptor from the ready stream (the reader
// that read the chunk holds it), fetches the bytes from that reader, hashes
// them into the chunk's ID (SHA-256, or in an encrypted repository a MAC
// under its write key), and asks the repository whether that chunk is already
// stored whole; only if not does it compress (zstd) and write it. It then
// records the completion and only after that acknowledges the descriptor,
// so a worker killed at any point loses nothing: the descriptor is
// redelivered and the content-addressed write is repeated harmlessly. The
// bytes come over HTTP from the reader's data server when it has one and
// it can be reached, else by request/reply over NATS (in parts, when a
// chunk is larger than a message); either way they never enter a stream.
// On shutdown it stops taking descriptors and lets in-flight chunks finish
// (drain); what it had taken but not started is handed back at once.
//
// A reader may also store chunks through a Compressor of its own process
// (TryStore, Store): the same work, without the trip.
//
// While the repository fails in a way that may pass, the store's retry
// (pkg/store/retry, set up by the process) tries again in place, and the
// worker keeps its descriptor alive meanwhile, so an outage spends none of
// the chunk's deliveries; it gives up, failing the job with an error naming
// the repository, when the retry's limit passes or the job ends.
package compressor

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/bufpool"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
)

// MaxDeliver is how often a chunk's descriptor is tried before it is given
// up (the coordinator then re-issues the chunk's read). Failures of the
// repository do not count: they are retried in place.
const MaxDeliver = 8

// chunksPerWorker is how many chunks a compressor holds per worker: one
// being hashed or compressed, the other being fetched, written and
// recorded, so the CPU does not idle while the network or the disk works.
const chunksPerWorker = 2

// fetchTimeout bounds fetching one chunk (or one part of it).
const fetchTimeout = time.Minute

// unreachableFor is how long a reader's data server that could not be
// reached is not tried again: its chunks come over NATS meanwhile.
const unreachableFor = 30 * time.Second

// errJobEnded means a chunk's job ended while the chunk waited for the
// repository.
var errJobEnded = errors.New("the job has ended")

// Config configures a Compressor.
type Config struct {
	// Name identifies this compressor in logs and completions; defaults to
	// the host name and process ID.
	Name string
	// Workers is how many chunks are hashed and compressed at once; 0
	// means one per CPU. Up to twice as many are in flight: while a chunk
	// is written and recorded, the next one is compressed.
	Workers int
	// Repos opens repositories. Required. Retries of a failing repository
	// are its stores' (retry.Store). An encrypted repository needs its
	// write key there; a compressor needs no more, and with no more it
	// cannot read what it stores.
	Repos *repository.Cache
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// DrainTimeout bounds how long in-flight chunks may finish after
	// shutdown begins; 0 means 30s.
	DrainTimeout time.Duration
	// Metrics, if set, records chunks, bytes and stage durations.
	Metrics *metrics.Metrics
	// RateLimit, for benchmarks only, slows each worker to this many raw
	// bytes per second, to show on a small machine how throughput scales
	// with compressors. 0 means no limit.
	RateLimit int64
	// Assist marks a compressor that helps the fleet's (a reader's own):
	// a chunk from the shared queue whose repository it cannot store into
	// (it cannot open it, or its credentials are refused) is left for the
	// fleet's compressors instead of failing the job.
	Assist bool
}

func (c *Config) validate() error {
	if c.Repos == nil {
		return errors.New("compressor: Config.Repos is required")
	}
	c.Workers = cmp.Or(c.Workers, runtime.GOMAXPROCS(0))
	if c.Workers < 0 || c.RateLimit < 0 {
		return fmt.Errorf("compressor: Workers %d and RateLimit %d must be positive", c.Workers, c.RateLimit)
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Compressor is one compressor process's worker pool.
type Compressor struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    Config
	logger *slog.Logger
	http   *http.Client

	jobsMu  sync.Mutex
	jobs    map[string]*jobInfo
	sealers sync.Map      // chunk.Level -> *chunk.Sealer
	sealed  *bufpool.Pool // sealed chunks on their way to the repository
	raw     *bufpool.Pool // fetched raw chunks
	handed  *bufpool.Pool // sealed chunks fetched from a data server, opened into raw ones
	slots   chan struct{} // bounds the chunks in flight
	cpu     chan struct{} // bounds hashing and compressing to Workers chunks

	// stopping ends when shutdown begins: fetches stop then (another
	// compressor takes their chunks), while stores in flight finish.
	stopping context.Context

	unreachMu   sync.Mutex
	unreachable map[string]time.Time // data servers not reached, until when
	refused     map[string]time.Time // repositories TryStore cannot store into, until when

	// chunks and bytes count what this compressor completed; inFlight
	// what it holds now. They feed its heartbeat.
	chunks, bytes, inFlight atomic.Int64
	started                 time.Time
}

type jobInfo struct {
	repo    string
	level   chunk.Level
	state   string
	fetched time.Time
}

// New returns a Compressor using nc.
func New(nc *nats.Conn, cfg Config) (*Compressor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("compressor: %w", err)
	}
	n := chunksPerWorker * cfg.Workers
	return &Compressor{
		nc: nc, js: js, cfg: cfg, jobs: make(map[string]*jobInfo), unreachable: make(map[string]time.Time), refused: make(map[string]time.Time), stopping: context.Background(),
		slots: make(chan struct{}, n), cpu: make(chan struct{}, cfg.Workers),
		sealed: bufpool.New(n, nil), raw: bufpool.New(n, nil), handed: bufpool.New(n, nil),
		http:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}},
		logger: cfg.Logger.With("component", "compressor", "worker", cfg.Name),
	}, nil
}

// Chunks returns how many chunks this compressor has completed.
func (c *Compressor) Chunks() int64 { return c.chunks.Load() }

// Run serves until ctx is cancelled, then drains in-flight chunks.
func (c *Compressor) Run(ctx context.Context) error {
	c.logger.InfoContext(ctx, "compressor serving", "workers", c.cfg.Workers)
	c.started = time.Now().UTC()
	c.stopping = ctx
	var wg sync.WaitGroup
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	wg.Go(func() { queue.Heartbeat(hbCtx, c.js, c.status) })
	defer func() { stopHeartbeat(); wg.Wait() }()
	wg.Go(func() {
		if err := c.serveTasks(ctx); err != nil {
			c.logger.ErrorContext(ctx, "maintenance tasks not served", "err", err)
		}
	})
	err := queue.Serve(ctx, c.js, queue.StreamReady, jetstream.ConsumerConfig{
		Durable:       queue.ConsumerCompressors,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 4096,
		MaxDeliver:    MaxDeliver,
	}, queue.HandlerFunc(c.handle), queue.ConsumeConfig{
		Workers: chunksPerWorker * c.cfg.Workers, DrainTimeout: c.cfg.DrainTimeout, Logger: c.logger, OnRetry: c.cfg.Metrics.Retry,
	})
	c.logger.InfoContext(context.WithoutCancel(ctx), "compressor stopped", "chunks", c.chunks.Load())
	return err
}

// handle stores the chunk a descriptor announces.
func (c *Compressor) handle(ctx context.Context, msg jetstream.Msg) error {
	var ready queue.ChunkReady
	if err := queue.Decode(msg.Data(), &ready); err != nil {
		return queue.Permanent(err)
	}
	job, err := c.runningJob(ctx, ready.JobID)
	if err != nil {
		return err
	}
	if c.cfg.Assist && c.notHere(job.repo) {
		return queue.RetryAfter(leaveDelay, errLeftToFleet)
	}
	rr := &repoRetries{c: c, jobID: ready.JobID, index: ready.Index, job: job, inProgress: msg.InProgress}
	key, err := c.handOverKey(rr.context(ctx), job.repo)
	if err != nil {
		if c.cfg.Assist && cannotStoreHere(err) {
			c.setNotHere(ctx, job.repo, err)
			return queue.RetryAfter(leaveDelay, fmt.Errorf("%w: %w", errLeftToFleet, err))
		}
		return c.complete(ctx, &queue.ChunkDone{JobID: ready.JobID, Index: ready.Index}, err)
	}
	if (key != nil) != ready.Read.Sealed {
		// The job was planned for a repository of another kind than the one
		// here: never take raw bytes for an encrypted repository.
		err := fmt.Errorf("chunk %d: the job hands it over sealed=%t, but repository %s is encrypted=%t", ready.Index, ready.Read.Sealed, job.repo, key != nil)
		return c.complete(ctx, &queue.ChunkDone{JobID: ready.JobID, Index: ready.Index}, queue.Permanent(err))
	}
	c.slots <- struct{}{}
	defer func() { <-c.slots }()
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	fetchCtx, cancelFetch := context.WithCancel(ctx)
	stop := context.AfterFunc(c.stopping, cancelFetch)
	data, err := c.fetch(fetchCtx, &ready, key)
	stop()
	cancelFetch()
	if err != nil && c.stopping.Err() != nil {
		return fmt.Errorf("compressor stopping: %w", err) // left for another compressor
	}
	if err != nil {
		// The reader is gone or cannot read the chunk: try again a few
		// times; past that the coordinator re-issues its read.
		if md, mdErr := msg.Metadata(); mdErr == nil && md.NumDelivered >= MaxDeliver {
			c.logger.WarnContext(ctx, "giving up fetching a chunk; its job re-issues it", "job_id", ready.JobID, "index", ready.Index, "err", err)
			return queue.Permanent(err)
		}
		return queue.RetryAfter(time.Second, err)
	}
	defer c.raw.Put(data)
	done, err := c.store(ctx, ready.JobID, ready.Index, data, job, rr)
	if c.cfg.Assist && err != nil && cannotStoreHere(err) {
		c.setNotHere(ctx, job.repo, err)
		return queue.RetryAfter(leaveDelay, fmt.Errorf("%w: %w", errLeftToFleet, err))
	}
	return c.complete(ctx, done, err)
}

// errLeftToFleet is why an assisting compressor hands a chunk back: it
// cannot store into the chunk's repository.
var errLeftToFleet = errors.New("left for the fleet's compressors: cannot store into the repository from here")

// leaveDelay is how long a chunk an assisting compressor hands back waits
// before it is offered again, so that another compressor takes it first.
const leaveDelay = time.Second

// TryStore stores a chunk a reader of this process read, when a worker is
// free now; it reports false at once when none is, and also when this
// process cannot store into the job's repository (it cannot open it, or
// the repository refuses its credentials): another compressor may. The
// completion is published before it returns. data is not kept.
func (c *Compressor) TryStore(ctx context.Context, jobID string, index int, data []byte) (bool, error) {
	select {
	case c.slots <- struct{}{}:
	default:
		return false, nil
	}
	defer func() { <-c.slots }()
	job, err := c.runningJob(ctx, jobID)
	if err != nil {
		return true, err
	}
	if c.notHere(job.repo) {
		return false, nil
	}
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	done, err := c.store(ctx, jobID, index, data, job, nil)
	if err != nil && cannotStoreHere(err) {
		c.setNotHere(ctx, job.repo, err)
		return false, nil
	}
	return true, c.complete(ctx, done, err)
}

// errOpen wraps the failure to open a job's repository.
var errOpen = errors.New("cannot open the repository")

// cannotStoreHere reports whether err says this process cannot store into
// a repository that another one may: it cannot open it (for a reason other
// than its being unreachable), or the repository refused its credentials.
func cannotStoreHere(err error) bool {
	return (errors.Is(err, errOpen) || errors.Is(err, store.ErrAccessDenied)) && !errors.Is(err, retry.ErrUnavailable)
}

// notHere reports whether repo was found not to take chunks from this
// process a short while ago.
func (c *Compressor) notHere(repo string) bool {
	c.unreachMu.Lock()
	defer c.unreachMu.Unlock()
	return time.Now().Before(c.refused[repo])
}

// setNotHere records that repo does not take chunks from this process, for
// unreachableFor, logging why once.
func (c *Compressor) setNotHere(ctx context.Context, repo string, err error) {
	c.unreachMu.Lock()
	defer c.unreachMu.Unlock()
	if time.Now().After(c.refused[repo]) {
		c.logger.WarnContext(ctx, "cannot store into the repository from here; handing chunks to the fleet's compressors", "repo", repo, "err", err)
	}
	c.refused[repo] = time.Now().Add(unreachableFor)
}

// Store is TryStore, waiting for a free worker.
func (c *Compressor) Store(ctx context.Context, jobID string, index int, data []byte) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.slots }()
	return c.storeLocal(ctx, jobID, index, data)
}

func (c *Compressor) storeLocal(ctx context.Context, jobID string, index int, data []byte) error {
	job, err := c.runningJob(ctx, jobID)
	if err != nil {
		return err
	}
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	done, err := c.store(ctx, jobID, index, data, job, nil)
	return c.complete(ctx, done, err)
}

// job returns what a compressor needs to know of a job, from the job's
// record, cached for a short while so a cancelled job stops promptly.
func (c *Compressor) job(ctx context.Context, id string) (*jobInfo, error) {
	c.jobsMu.Lock()
	defer c.jobsMu.Unlock()
	if j, ok := c.jobs[id]; ok && time.Since(j.fetched) < 2*time.Second {
		return j, nil
	}
	rec, err := c.jobRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.Backup == nil {
		return nil, queue.Permanent(fmt.Errorf("job %s: record is not a backup", id))
	}
	level, err := chunk.ParseLevel(rec.Backup.Level)
	if err != nil {
		return nil, queue.Permanent(err)
	}
	j := &jobInfo{repo: rec.Backup.Repo, level: level, state: rec.State, fetched: time.Now()}
	c.jobs[id] = j
	for k, old := range c.jobs { // forget long-finished jobs
		if time.Since(old.fetched) > time.Hour {
			delete(c.jobs, k)
		}
	}
	return j, nil
}

// jobRecord reads job id's record; a job that is not there is a permanent
// error.
func (c *Compressor) jobRecord(ctx context.Context, id string) (*queue.Job, error) {
	kv, err := c.js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, queue.Obsolete(fmt.Errorf("job %s: no such job", id))
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	var rec queue.Job
	if err := queue.Decode(entry.Value(), &rec); err != nil {
		return nil, queue.Permanent(fmt.Errorf("job %s: record: %w", id, err))
	}
	return &rec, nil
}

// runningJob returns the job a chunk belongs to; an error that is
// permanent when the job is gone or has ended (its chunks are not stored).
func (c *Compressor) runningJob(ctx context.Context, id string) (*jobInfo, error) {
	job, err := c.job(ctx, id)
	if err != nil {
		return nil, err
	}
	if queue.Final(job.state) {
		return nil, queue.Obsolete(fmt.Errorf("job %s is %s: %w", id, job.state, errJobEnded))
	}
	return job, nil
}

func (c *Compressor) sealer(level chunk.Level) (*chunk.Sealer, error) {
	if s, ok := c.sealers.Load(level); ok {
		return s.(*chunk.Sealer), nil
	}
	s, err := chunk.NewSealer(level)
	if err != nil {
		return nil, err
	}
	actual, _ := c.sealers.LoadOrStore(level, s)
	return actual.(*chunk.Sealer), nil
}

// fetch gets the bytes of a ready chunk from the reader that announced it:
// from its data server when it has one and it can be reached, else over
// NATS. The chunks of an encrypted repository come sealed
// (queue.FetchAAD), and are opened here.
func (c *Compressor) fetch(ctx context.Context, ready *queue.ChunkReady, key *keyring.WriteKey) ([]byte, error) {
	start := time.Now()
	defer c.cfg.Metrics.Stage("fetch", start)
	buf := c.raw.Get(int(ready.Length))
	req := queue.FetchRequest{
		V: queue.WorkVersion, JobID: ready.JobID, Index: ready.Index, Length: ready.Length, Read: ready.Read, Token: ready.Token,
	}
	if ready.Direct != "" && c.reachable(ready.Direct) {
		err := c.fetchDirect(ctx, ready.Direct, &req, buf, key)
		if err == nil {
			err = checkCRC(ready, buf)
		}
		if err == nil {
			return buf, nil
		}
		// The reader answered about the chunk: NATS would not do better.
		// A refused token, though, may come from another process at an
		// address that means something else here (127.0.0.1).
		var f *queue.Failure
		if errors.As(err, &f) && f.Code != queue.CodeDenied {
			c.raw.Put(buf)
			return nil, err
		}
		c.logger.InfoContext(ctx, "reader's data server not reached; fetching over NATS", "url", ready.Direct, "err", err)
		c.setUnreachable(ready.Direct)
	}
	err := c.fetchNATS(ctx, ready, &req, buf, key)
	if err == nil {
		err = checkCRC(ready, buf)
	}
	if err != nil {
		c.raw.Put(buf)
		return nil, err
	}
	return buf, nil
}

// checkCRC fails unless raw, the bytes fetched for ready, are those the
// reader read (ChunkReady.CRC32C, when it gives one): bytes that changed on
// the way or in the reader's memory are never stored as the chunk. The
// fetch is tried again, and past that the chunk read again.
func checkCRC(ready *queue.ChunkReady, raw []byte) error {
	if ready.CRC32C == 0 {
		return nil
	}
	if got := queue.ChunkCRC(raw); got != ready.CRC32C {
		return queue.Failed(queue.CodeCorrupt, "chunk %d of job %s from host %s: the bytes fetched have CRC32C %08x, the reader read %08x",
			ready.Index, ready.JobID, ready.Host, got, ready.CRC32C)
	}
	return nil
}

// repoRetries counts the retried repository calls made for one chunk and
// says so in the log, and makes them give up once the chunk's job has
// ended (retry.WithNotify).
type repoRetries struct {
	c          *Compressor
	jobID      string
	index      int
	job        *jobInfo
	inProgress func() error // called on each retry, if set
	n          int          // the calls retried
	first      time.Time    // when the first of them began
}

// context returns ctx with rr notified of the retries of calls made with it.
func (rr *repoRetries) context(ctx context.Context) context.Context {
	c := rr.c
	return retry.WithNotify(ctx, func(attempt int, waited time.Duration, err error) error {
		if rr.n++; rr.n == 1 {
			rr.first = time.Now().Add(-waited)
		}
		if j, jobErr := c.job(ctx, rr.jobID); jobErr == nil && queue.Final(j.state) {
			return fmt.Errorf("job %s is %s: %w", rr.jobID, j.state, errJobEnded) // cancelled or failed meanwhile
		}
		c.logger.WarnContext(ctx, "repository unavailable; retrying", "job_id", rr.jobID, "index", rr.index,
			"repo", rr.job.repo, "attempt", attempt, "waited", waited.Round(time.Millisecond), "err", err)
		c.cfg.Metrics.Retry("store")
		if rr.inProgress != nil {
			_ = rr.inProgress()
		}
		return nil
	})
}

// handOverKey returns the key that opens the chunks handed over for the
// repository named repo (repository.HandOverKey), nil for a plaintext one.
// ctx carries the chunk's repoRetries.
func (c *Compressor) handOverKey(ctx context.Context, repo string) (*keyring.WriteKey, error) {
	r, err := c.cfg.Repos.Get(ctx, repo, false)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errOpen, repo, err)
	}
	key, err := r.HandOverKey()
	if err != nil {
		return nil, queue.Permanent(err) // an encrypted repository this process has no key for
	}
	return key, nil
}

// fetchDirect fetches a whole chunk from a reader's data server, and with
// key (an encrypted repository's) opens it.
func (c *Compressor) fetchDirect(ctx context.Context, url string, req *queue.FetchRequest, buf []byte, key *keyring.WriteKey) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(queue.Encode(req)))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ans struct{ Code, Error string }
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans) != nil || ans.Code == "" {
			return fmt.Errorf("data server %s: %s", url, resp.Status)
		}
		return queue.Failed(queue.Code(ans.Code), "%s", ans.Error)
	}
	into := buf
	if key != nil {
		into = c.handed.Get(len(buf) + keyring.StagingOverhead)
		defer c.handed.Put(into)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(into)) {
		return fmt.Errorf("data server %s sends %d bytes of chunk %d, want %d", url, resp.ContentLength, req.Index, len(into))
	}
	if _, err := io.ReadFull(resp.Body, into); err != nil {
		return fmt.Errorf("data server %s: chunk %d: %w", url, req.Index, err)
	}
	if n, _ := resp.Body.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("data server %s sent more than the %d bytes of chunk %d", url, len(into), req.Index)
	}
	if key != nil {
		return openHandedOver(key, req, buf[:0], into, "data server "+url)
	}
	return nil
}

// openHandedOver opens sealed, the bytes a fetch req answered with, into
// dst (which has room for them), checking they are all it asked for.
func openHandedOver(key *keyring.WriteKey, req *queue.FetchRequest, dst, sealed []byte, from string) error {
	out, err := key.OpenStaging(dst, req.JobID, sealed, queue.FetchAAD(req))
	if err != nil {
		return queue.Failed(queue.CodeCorrupt, "%s: chunk %d at %d: %v", from, req.Index, req.Offset, err)
	}
	if int64(len(out)) != req.Length {
		return queue.Failed(queue.CodeCorrupt, "%s: chunk %d at %d: %d bytes, want %d", from, req.Index, req.Offset, len(out), req.Length)
	}
	return nil
}

// fetchNATS fetches a chunk from the readers of its host by request/reply,
// in parts that fit a message, and with key (an encrypted repository's)
// opens each.
func (c *Compressor) fetchNATS(ctx context.Context, ready *queue.ChunkReady, req *queue.FetchRequest, buf []byte, key *keyring.WriteKey) error {
	part := max(c.nc.MaxPayload()-64<<10, 64<<10)
	for off := int64(0); off < ready.Length; off += part {
		req.Offset, req.Length = off, min(part, ready.Length-off)
		reqCtx, cancel := context.WithTimeout(ctx, fetchTimeout)
		msg, err := c.nc.RequestWithContext(reqCtx, queue.FetchSubject(ready.Host), queue.Encode(req))
		cancel()
		if err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				return fmt.Errorf("no reader of host %s serves chunk %d of job %s", ready.Host, ready.Index, ready.JobID)
			}
			return fmt.Errorf("fetch chunk %d from host %s: %w", ready.Index, ready.Host, err)
		}
		if code := msg.Header.Get(queue.HeaderCode); code != "" {
			return queue.Failed(queue.Code(code), "%s", msg.Header.Get(queue.HeaderError))
		}
		if key != nil {
			if err := openHandedOver(key, req, buf[off:off], msg.Data, "host "+ready.Host); err != nil {
				return err
			}
			continue
		}
		if int64(len(msg.Data)) != req.Length {
			return fmt.Errorf("host %s sent %d bytes of chunk %d at %d, want %d", ready.Host, len(msg.Data), ready.Index, off, req.Length)
		}
		copy(buf[off:], msg.Data)
	}
	return nil
}

func (c *Compressor) reachable(url string) bool {
	c.unreachMu.Lock()
	defer c.unreachMu.Unlock()
	return time.Now().After(c.unreachable[url])
}

func (c *Compressor) setUnreachable(url string) {
	c.unreachMu.Lock()
	defer c.unreachMu.Unlock()
	c.unreachable[url] = time.Now().Add(unreachableFor)
}

// complete records the outcome of storing a chunk: its completion, or for
// a permanent failure the failure that fails the job. A job that ended
// while the chunk waited needs neither.
func (c *Compressor) complete(ctx context.Context, done *queue.ChunkDone, err error) error {
	if errors.Is(err, errJobEnded) {
		return queue.Obsolete(err) // nobody waits for its completions
	}
	if err != nil {
		code, permanent := codeOf(err)
		if !permanent {
			return err
		}
		f := &queue.WorkFailed{V: queue.WorkVersion, JobID: done.JobID, Op: queue.OpRead, Index: done.Index,
			Code: code, Message: err.Error(), Worker: c.cfg.Name}
		c.logger.ErrorContext(ctx, "chunk failed", "job_id", done.JobID, "index", done.Index, "code", code, "err", err)
		if _, pubErr := c.js.Publish(ctx, queue.DoneSubject(done.JobID, queue.DoneFailed), queue.Encode(f),
			jetstream.WithMsgID(queue.WorkFailedMsgID(f))); pubErr != nil {
			return fmt.Errorf("publish failure: %w", pubErr)
		}
		return queue.Permanent(err)
	}
	if _, err := c.js.Publish(ctx, queue.DoneSubject(done.JobID, queue.DoneChunk), queue.Encode(done),
		jetstream.WithMsgID(queue.ChunkDoneMsgID(done))); err != nil {
		return fmt.Errorf("publish completion: %w", err)
	}
	c.chunks.Add(1)
	c.bytes.Add(done.Length)
	return nil
}

// codeOf classifies an error of storing a chunk; permanent reports whether
// it fails the job rather than being retried.
func codeOf(err error) (code queue.Code, permanent bool) {
	switch {
	case errors.Is(err, retry.ErrUnavailable):
		return queue.CodeUnavailable, true
	case errors.Is(err, store.ErrNoSpace):
		return queue.CodeNoSpace, true
	case errors.Is(err, store.ErrAccessDenied):
		return queue.CodeDenied, true
	case queue.IsPermanent(err):
		return queue.CodeFailed, true
	}
	return queue.CodeFailed, false
}

// status is this compressor's heartbeat.
func (c *Compressor) status() queue.WorkerStatus {
	host, _ := os.Hostname()
	return queue.WorkerStatus{
		ID: c.cfg.Name, Role: queue.RoleCompressor, Host: host, Started: c.started, Workers: c.cfg.Workers,
		InFlight: c.inFlight.Load(), Chunks: c.chunks.Load(), Bytes: c.bytes.Load(),
	}
}

// store hashes, deduplicates, seals and writes one chunk. While the
// repository fails in a way that may pass, its store retries in place;
// meanwhile rr (nil for a chunk of this process: a new one) keeps the
// chunk's message alive and stops when the job has ended.
func (c *Compressor) store(ctx context.Context, jobID string, index int, raw []byte, job *jobInfo, rr *repoRetries) (*queue.ChunkDone, error) {
	done := &queue.ChunkDone{V: queue.WorkVersion, JobID: jobID, Index: index, Worker: c.cfg.Name, Length: int64(len(raw))}
	if rr == nil {
		rr = &repoRetries{c: c, jobID: jobID, index: index, job: job}
	}
	defer func() {
		if rr.n > 0 && done.StoredSize > 0 {
			c.logger.InfoContext(ctx, "repository reachable again", "job_id", jobID, "index", index, "repo", job.repo,
				"retries", rr.n, "waited", time.Since(rr.first))
		}
	}()
	ctx = rr.context(ctx)
	repo, err := c.cfg.Repos.Get(ctx, job.repo, false)
	if err != nil {
		return done, fmt.Errorf("%w %s: %w", errOpen, job.repo, err)
	}
	m := c.cfg.Metrics
	defer m.Begin("compress")()
	if err := c.acquireCPU(ctx); err != nil {
		return done, err
	}
	start := time.Now()
	id, err := repo.ChunkID(raw)
	m.Stage("hash", start)
	c.releaseCPU()
	if err != nil {
		return done, queue.Permanent(err) // an encrypted repository this process has no key for
	}
	done.Hash = id.String()
	// CheckReuse also keeps the chunk from any prune that condemned it
	// (docs/format.md section 10), whether it is reused or stored.
	stat, err := repo.CheckReuse(ctx, id)
	if err != nil {
		m.Error("stat")
		return done, repoError(job.repo, err)
	}
	size := stat.Size
	// Only an intact object that no check, verify or restore recorded as
	// damaged is deduplicated against: a missing, truncated, unverifiable
	// or recorded one is stored again, so a backup never names a chunk it
	// knows is not there whole.
	if !stat.Reusable(0) {
		if stat.State != repository.ChunkMissing {
			c.logger.WarnContext(ctx, "stored chunk is not intact; storing it again", "job_id", jobID,
				"chunk_id", id.String(), "state", stat.State.String(), "problem", stat.Problem)
		}
		sealer, err := c.sealer(job.level)
		if err != nil {
			return done, queue.Permanent(err)
		}
		if err := c.acquireCPU(ctx); err != nil {
			return done, err
		}
		start = time.Now()
		// Sized for the worst case, stored raw, so that it never grows.
		sealed, err := repo.SealChunk(sealer, c.sealed.Get(sealer.MaxSealedSize(len(raw)))[:0], id, raw)
		c.throttle(ctx, int64(len(raw)), time.Since(start))
		m.Stage("compress", start)
		c.releaseCPU()
		if err != nil {
			c.sealed.Put(sealed)
			return done, queue.Permanent(err)
		}
		start = time.Now()
		err = repo.PutChunk(ctx, id, sealed)
		m.Stage("put", start)
		size = int64(len(sealed))
		c.sealed.Put(sealed)
		if err != nil {
			m.Error("put")
			return done, repoError(job.repo, err)
		}
		if stat.Recorded {
			// Repaired: stored whole again.
			if err := repo.ClearDamage(ctx, id); err != nil {
				return done, repoError(job.repo, err)
			}
			c.logger.InfoContext(ctx, "damaged chunk stored again", "job_id", jobID, "chunk_id", id.String())
		}
		done.New = true
		m.Chunk("stored", done.Length)
		m.Stored("chunk", size)
	} else {
		m.Chunk("deduplicated", done.Length)
	}
	done.StoredSize = size
	c.logger.DebugContext(ctx, "chunk stored", "job_id", jobID, "chunk_id", done.Hash, "bytes", done.Length, "new", done.New)
	return done, nil
}

// repoError says what a failure of repository repo means for its users,
// where the store's error does not: that it is full, or refused access.
func repoError(repo string, err error) error {
	switch {
	case errors.Is(err, store.ErrNoSpace):
		return fmt.Errorf("repository %s is full: %w", repo, err)
	case errors.Is(err, store.ErrAccessDenied):
		return fmt.Errorf("repository %s refused access: %w", repo, err)
	}
	return err
}

// throttle, with Config.RateLimit, holds a worker until compressing n bytes
// has taken as long as the limit allows (benchmarks only).
func (c *Compressor) throttle(ctx context.Context, n int64, took time.Duration) {
	if c.cfg.RateLimit <= 0 {
		return
	}
	if want := time.Duration(float64(n) / float64(c.cfg.RateLimit) * float64(time.Second)); want > took {
		t := time.NewTimer(want - took)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// acquireCPU waits for one of the Workers turns to hash or compress.
func (c *Compressor) acquireCPU(ctx context.Context) error {
	select {
	case c.cpu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Compressor) releaseCPU() { <-c.cpu }
