// Package compressor is the compressor service: stateless workers, scaled
// horizontally, that turn raw chunks into stored chunks.
//
// Each worker pulls a raw chunk from the shared raw queue, hashes it
// (SHA-256), and asks the repository whether that chunk is already stored;
// only if not does it compress (zstd) and write it. It then records the
// completion on the done stream and only after that acknowledges the raw
// message, so a worker killed at any point loses nothing: the message is
// redelivered and the content-addressed write is repeated harmlessly. A
// chunk too large for a message arrives staged in the repository; its
// staged object is deleted only once the server has confirmed the
// acknowledgement, since a redelivery before that needs it (what a worker
// killed in between leaves, the coordinator removes when the job ends). On
// shutdown it stops pulling and lets in-flight chunks finish (drain); what it
// had pulled but not started is handed back at once.
//
// A reader in the same process (the single-machine fleet) hands its chunks
// over with Handoff instead: the same work, without the chunk's copies
// through the NATS server; the reader acknowledges its read work item only
// once Handoff has stored the chunk and published the completion.
package compressor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/bufpool"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// MaxDeliver is how often a raw chunk is tried before the job is failed.
// Failures of the repository do not count: a worker retries those in place
// (see Config.StoreTimeout).
const MaxDeliver = 8

// DefaultStoreTimeout is Config.StoreTimeout's default: long enough to ride
// out a restart of the object store or a network blip, short enough that a
// job whose repository is gone fails well before the coordinator's own
// limits (its chunk timeout re-issues work after 2m, its stall timeout fails
// the job after 10m) with a less precise error.
const DefaultStoreTimeout = 5 * time.Minute

// chunksPerWorker is how many chunks a compressor holds per worker: one
// being hashed or compressed, the other being written to the repository
// and recorded, so the CPU does not idle while a write waits for the disk
// or S3.
const chunksPerWorker = 2

// errJobEnded means a chunk's job ended while the chunk waited for the
// repository.
var errJobEnded = errors.New("the job has ended")

// Retry delays while the repository fails: doubling from the first to the
// last, so a worker notices a recovery within storeRetryMax.
const (
	storeRetryMin = 250 * time.Millisecond
	storeRetryMax = 5 * time.Second
)

// Config configures a Compressor.
type Config struct {
	// Name identifies this compressor in logs and completions; defaults to
	// the host name and process ID.
	Name string
	// Workers is how many chunks are hashed and compressed at once; 0
	// means one per CPU. Up to twice as many are in flight: while a chunk
	// is written and recorded, the next one is compressed.
	Workers int
	// Repos opens repositories. Required.
	Repos *repository.Cache
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// DrainTimeout bounds how long in-flight chunks may finish after
	// shutdown begins; 0 means 30s.
	DrainTimeout time.Duration
	// Metrics, if set, records chunks, bytes and stage durations.
	Metrics *metrics.Metrics
	// StoreTimeout bounds how long a worker retries one chunk while the
	// repository fails (unreachable, refusing requests). The worker keeps
	// the message meanwhile, so an outage spends none of its deliveries;
	// past the limit the chunk fails, and with it the job, with an error
	// naming the repository. 0 means DefaultStoreTimeout.
	StoreTimeout time.Duration
}

func (c *Config) validate() error {
	if c.Repos == nil {
		return errors.New("compressor: Config.Repos is required")
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Workers < 0 {
		return fmt.Errorf("compressor: Workers %d must be positive", c.Workers)
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.StoreTimeout < 0 {
		return fmt.Errorf("compressor: StoreTimeout %s must be positive", c.StoreTimeout)
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
	js     jetstream.JetStream
	cfg    Config
	logger *slog.Logger

	jobsMu  sync.Mutex
	jobs    map[string]*jobInfo
	sealers sync.Map      // chunk.Level -> *chunk.Sealer
	bufs    *bufpool.Pool // sealed chunks on their way to the repository
	slots   chan struct{} // bounds Handoff to the chunks in flight
	cpu     chan struct{} // bounds hashing and compressing to Workers chunks

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
	return &Compressor{
		js: js, cfg: cfg, jobs: make(map[string]*jobInfo),
		slots:  make(chan struct{}, chunksPerWorker*cfg.Workers),
		cpu:    make(chan struct{}, cfg.Workers),
		bufs:   bufpool.New(chunksPerWorker*cfg.Workers, nil),
		logger: cfg.Logger.With("component", "compressor", "worker", cfg.Name),
	}, nil
}

// Chunks returns how many chunks this compressor has completed.
func (c *Compressor) Chunks() int64 { return c.chunks.Load() }

// Run serves until ctx is cancelled, then drains in-flight chunks.
func (c *Compressor) Run(ctx context.Context) error {
	c.logger.InfoContext(ctx, "compressor serving", "workers", c.cfg.Workers)
	c.started = time.Now().UTC()
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	defer stopHeartbeat()
	go queue.Heartbeat(hbCtx, c.js, c.status)
	err := queue.Serve(ctx, c.js, queue.StreamRaw, jetstream.ConsumerConfig{
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

// job returns what a compressor needs to know of a job, from the job's
// record, cached for a short while so a cancelled job stops promptly.
func (c *Compressor) job(ctx context.Context, id string) (*jobInfo, error) {
	c.jobsMu.Lock()
	defer c.jobsMu.Unlock()
	if j, ok := c.jobs[id]; ok && time.Since(j.fetched) < 2*time.Second {
		return j, nil
	}
	kv, err := c.js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, queue.Permanent(fmt.Errorf("job %s: no such job", id))
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	var rec queue.Job
	if err := queue.Decode(entry.Value(), &rec); err != nil || rec.Backup == nil {
		return nil, queue.Permanent(fmt.Errorf("job %s: record is not a backup: %v", id, err))
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

// rawChunk is one raw chunk to store: from the raw queue, or handed over
// in memory by a reader in the same process.
type rawChunk struct {
	jobID string
	index int
	// data is the chunk's bytes; nil when it is staged.
	data []byte
	// staged is the repository key of a chunk too large for a message.
	staged string
	// length is the raw message's length header, checked against what
	// arrived; "" for a chunk handed over in memory.
	length string
	// inProgress tells the raw queue the chunk is still being worked on;
	// nil for a chunk handed over in memory (its reader keeps its own work
	// item alive).
	inProgress func() error
}

func (c *Compressor) handle(ctx context.Context, msg jetstream.Msg) error {
	h := msg.Headers()
	index, err := strconv.Atoi(h.Get(queue.HeaderIndex))
	rc := &rawChunk{
		jobID: h.Get(queue.HeaderJob), index: index, data: msg.Data(),
		staged: h.Get(queue.HeaderStaged), length: h.Get(queue.HeaderLength), inProgress: msg.InProgress,
	}
	if err != nil || rc.jobID == "" {
		return queue.Permanent(fmt.Errorf("raw chunk on %s without job or index headers", msg.Subject()))
	}
	job, err := c.runningJob(ctx, rc.jobID)
	if err != nil {
		return err
	}
	done, err := c.process(ctx, rc, job)
	if err != nil && !queue.IsPermanent(err) {
		if md, mdErr := msg.Metadata(); mdErr == nil && md.NumDelivered >= MaxDeliver {
			err = queue.Permanent(fmt.Errorf("chunk %d of job %s: giving up after %d attempts: %w", index, rc.jobID, md.NumDelivered, err))
		}
	}
	if err := c.complete(ctx, done, err); err != nil {
		return err
	}
	if rc.staged != "" {
		c.deleteStaged(ctx, msg, job, rc.staged)
	}
	return nil
}

// Handoff stores a raw chunk handed over in memory by a reader in the same
// process, which saves the chunk's trip through the NATS server: the same
// work as for a chunk from the raw queue, with the same bounds, and the
// completion is published before Handoff returns. data is not kept.
// An error means the chunk was not stored; when it is permanent the job
// has been failed.
func (c *Compressor) Handoff(ctx context.Context, jobID string, index int, data []byte) error {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	job, err := c.runningJob(ctx, jobID)
	if err != nil {
		return err
	}
	done, err := c.process(ctx, &rawChunk{jobID: jobID, index: index, data: data}, job)
	return c.complete(ctx, done, err)
}

// runningJob returns the job a chunk belongs to; an error that is
// permanent when the job is gone or has ended (its chunks are not stored).
func (c *Compressor) runningJob(ctx context.Context, id string) (*jobInfo, error) {
	job, err := c.job(ctx, id)
	if err != nil {
		return nil, err
	}
	if queue.Final(job.state) {
		return nil, queue.Permanent(fmt.Errorf("job %s is %s", id, job.state))
	}
	return job, nil
}

// process stores one raw chunk of a running job.
func (c *Compressor) process(ctx context.Context, rc *rawChunk, job *jobInfo) (*queue.Done, error) {
	done := &queue.Done{V: queue.MessageVersion, JobID: rc.jobID, Op: queue.OpRead, Index: rc.index, Worker: c.cfg.Name}
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	return done, c.storeRetrying(ctx, rc, job, done)
}

// complete records the outcome of processing a chunk: its completion, or
// for a permanent failure the error that fails the job. A job that ended
// while the chunk waited needs neither.
func (c *Compressor) complete(ctx context.Context, done *queue.Done, err error) error {
	if errors.Is(err, errJobEnded) {
		return err // nobody waits for its completions
	}
	if queue.IsPermanent(err) {
		done.Error = err.Error()
		if pubErr := c.publishDone(ctx, done); pubErr != nil {
			return pubErr
		}
		return err
	}
	if err != nil {
		return err
	}
	if err := c.publishDone(ctx, done); err != nil {
		return err
	}
	c.chunks.Add(1)
	c.bytes.Add(done.Length)
	return nil
}

// deleteStaged deletes a stored chunk's staged object once the server has
// confirmed the raw message's acknowledgement: until then the message may
// be redelivered, and the redelivery needs the object. If the
// acknowledgement is not confirmed the object stays; the coordinator
// removes a job's staged objects when the job ends.
func (c *Compressor) deleteStaged(ctx context.Context, msg jetstream.Msg, job *jobInfo, key string) {
	if err := msg.DoubleAck(ctx); err != nil {
		c.logger.WarnContext(ctx, "ack not confirmed; staged chunk kept", "key", key, "err", err)
		return
	}
	repo, err := c.cfg.Repos.Get(ctx, job.repo, false)
	if err == nil {
		err = repo.Store().Delete(ctx, key)
	}
	if err != nil {
		c.logger.WarnContext(ctx, "delete staged chunk", "key", key, "err", err)
	}
}

// status is this compressor's heartbeat.
func (c *Compressor) status() queue.WorkerStatus {
	host, _ := os.Hostname()
	return queue.WorkerStatus{
		ID: c.cfg.Name, Role: queue.RoleCompressor, Host: host, Started: c.started, Workers: c.cfg.Workers,
		InFlight: c.inFlight.Load(), Chunks: c.chunks.Load(), Bytes: c.bytes.Load(),
	}
}

// storeRetrying stores one chunk, retrying in place while the repository
// fails, with a growing delay, until it succeeds or has failed for
// StoreTimeout; then the error is permanent and names the repository. While
// it waits it tells the server the message is in progress, so the message
// is neither redelivered nor counted against MaxDeliver: every other worker
// would fail on it the same way. A staged chunk that is not found and
// refused credentials are not outages; they go the usual way (nak and
// redeliver, perhaps to a compressor with working credentials). A full
// repository fails the chunk, and with it the job, at once.
func (c *Compressor) storeRetrying(ctx context.Context, rc *rawChunk, job *jobInfo, done *queue.Done) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := c.store(ctx, rc, job, done)
		if err == nil {
			if attempt > 1 {
				c.logger.InfoContext(ctx, "repository reachable again", "job_id", done.JobID, "index", done.Index,
					"repo", job.repo, "attempt", attempt, "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if errors.Is(err, store.ErrNoSpace) {
			// A full repository is not an outage that passes: every chunk
			// would fail the same way until someone frees space. Fail the
			// job now, naming the cause, rather than after StoreTimeout.
			c.cfg.Metrics.Error("no_space")
			return queue.Permanent(fmt.Errorf("repository %s is full: %w", job.repo, err))
		}
		if queue.IsPermanent(err) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrAccessDenied) || ctx.Err() != nil {
			return err
		}
		waited := time.Since(start)
		if waited >= c.cfg.StoreTimeout {
			c.cfg.Metrics.Error("store_timeout")
			return queue.Permanent(fmt.Errorf("repository %s unavailable for %s, past the compressor's store timeout (%s): %w",
				job.repo, waited.Round(time.Second), c.cfg.StoreTimeout, err))
		}
		if j, jobErr := c.job(ctx, done.JobID); jobErr == nil && queue.Final(j.state) {
			return queue.Permanent(fmt.Errorf("job %s is %s: %w", done.JobID, j.state, errJobEnded)) // cancelled or failed meanwhile
		}
		c.logger.WarnContext(ctx, "repository unavailable; retrying", "job_id", done.JobID, "index", done.Index,
			"repo", job.repo, "attempt", attempt, "waited", waited.Round(time.Millisecond), "err", err)
		c.cfg.Metrics.Retry("store")
		if rc.inProgress != nil {
			if ipErr := rc.inProgress(); ipErr != nil {
				c.logger.DebugContext(ctx, "extend ack wait", "job_id", done.JobID, "err", ipErr)
			}
		}
		delay := min(storeRetryMax, storeRetryMin<<min(attempt-1, 10), c.cfg.StoreTimeout-waited)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
}

// store hashes, deduplicates, seals and writes one chunk, filling in done.
func (c *Compressor) store(ctx context.Context, rc *rawChunk, job *jobInfo, done *queue.Done) error {
	repo, err := c.cfg.Repos.Get(ctx, job.repo, false)
	if err != nil {
		return fmt.Errorf("repository %s: %w", job.repo, err)
	}
	raw := rc.data
	if rc.staged != "" {
		if raw, err = repo.Store().Get(ctx, rc.staged); err != nil {
			return fmt.Errorf("staged chunk %s: %w", rc.staged, err)
		}
	}
	if want := rc.length; want != "" && want != strconv.Itoa(len(raw)) {
		return queue.Permanent(fmt.Errorf("chunk %d: %d bytes arrived, header says %s", done.Index, len(raw), want))
	}
	m := c.cfg.Metrics
	defer m.Begin("compress")()
	if err := c.acquireCPU(ctx); err != nil {
		return err
	}
	start := time.Now()
	id := chunk.Sum(raw)
	m.Stage("hash", start)
	c.releaseCPU()
	done.Hash, done.Length = id.String(), int64(len(raw))
	stat, err := repo.StatChunk(ctx, id)
	if err != nil {
		m.Error("stat")
		return err
	}
	size := stat.Size
	// Only an intact object is deduplicated against: a missing,
	// truncated or unverifiable one is stored again, so a backup never
	// names a chunk it knows is not there whole.
	if stat.State != repository.ChunkIntact {
		if stat.State != repository.ChunkMissing {
			c.logger.WarnContext(ctx, "stored chunk is not intact; storing it again", "job_id", done.JobID,
				"chunk_id", id.String(), "state", stat.State.String(), "problem", stat.Problem)
		}
		sealer, err := c.sealer(job.level)
		if err != nil {
			return queue.Permanent(err)
		}
		if err := c.acquireCPU(ctx); err != nil {
			return err
		}
		start = time.Now()
		// Sized for the worst case, stored raw, so that it never grows.
		sealed := sealer.Seal(c.bufs.Get(chunk.HeaderSize + len(raw))[:0], id, raw)
		m.Stage("compress", start)
		c.releaseCPU()
		start = time.Now()
		err = repo.PutChunk(ctx, id, sealed)
		m.Stage("put", start)
		size = int64(len(sealed))
		c.bufs.Put(sealed)
		if err != nil {
			m.Error("put")
			return err
		}
		done.New = true
		m.Chunk("stored", done.Length)
		m.Stored("chunk", size)
	} else {
		m.Chunk("deduplicated", done.Length)
	}
	done.StoredSize = size
	c.logger.DebugContext(ctx, "chunk stored", "job_id", done.JobID, "chunk_id", done.Hash, "bytes", done.Length, "new", done.New)
	return nil
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

func (c *Compressor) publishDone(ctx context.Context, d *queue.Done) error {
	if _, err := c.js.Publish(ctx, queue.DoneSubject(d.JobID), queue.Encode(d), jetstream.WithMsgID(queue.DoneMsgID(d))); err != nil {
		return fmt.Errorf("publish done: %w", err)
	}
	return nil
}
