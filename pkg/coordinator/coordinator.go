package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// Config configures a Coordinator. Zero durations and counts take the
// defaults named on each field.
type Config struct {
	// Repos opens repositories. Required.
	Repos *repository.Cache
	// Streams sizes the JetStream streams the coordinator sets up.
	Streams queue.StreamConfig
	// Window is how many work items of one job may be outstanding;
	// DefaultWindow.
	Window int
	// ChunkTimeout is how long a work item may stay without completion
	// before it is published again; DefaultChunkTimeout.
	ChunkTimeout time.Duration
	// MaxAttempts is how often one item is published before the job fails; 5.
	MaxAttempts int
	// StallTimeout fails a job that completes nothing for this long;
	// DefaultStallTimeout.
	StallTimeout time.Duration
	// ReaderTimeout is how long a job waits for a reader of its host;
	// DefaultReaderTimeout.
	ReaderTimeout time.Duration
	// ProgressInterval is how often progress events are published; 1s.
	ProgressInterval time.Duration
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Metrics, if set, records jobs and the depth of the work queues.
	Metrics *metrics.Metrics
	// Clock tells the time schedules fire by; nil means time.Now.
	Clock func() time.Time
	// ScheduleTick is how often schedules are checked for a due window; 15s.
	ScheduleTick time.Duration
}

// Defaults of the Config fields the coordinator's flags set.
const (
	DefaultWindow        = 512
	DefaultChunkTimeout  = 2 * time.Minute
	DefaultStallTimeout  = 10 * time.Minute
	DefaultReaderTimeout = time.Minute
)

func (c *Config) validate() error {
	if c.Repos == nil {
		return errors.New("coordinator: Config.Repos is required")
	}
	c.Window = cmp.Or(c.Window, DefaultWindow)
	c.ChunkTimeout = cmp.Or(c.ChunkTimeout, DefaultChunkTimeout)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 5)
	c.StallTimeout = cmp.Or(c.StallTimeout, DefaultStallTimeout)
	c.ReaderTimeout = cmp.Or(c.ReaderTimeout, DefaultReaderTimeout)
	c.ProgressInterval = cmp.Or(c.ProgressInterval, time.Second)
	c.ScheduleTick = cmp.Or(c.ScheduleTick, 15*time.Second)
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.ScheduleTick < 0 {
		return errors.New("coordinator: ScheduleTick must be positive")
	}
	if c.Window < 1 || c.MaxAttempts < 1 || c.ChunkTimeout < 0 || c.StallTimeout < 0 || c.ReaderTimeout < 0 {
		return errors.New("coordinator: Window, MaxAttempts and timeouts must be positive")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Coordinator is the control plane service.
type Coordinator struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    Config
	logger *slog.Logger
	kv     jetstream.KeyValue

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
	// restoring holds the running restore jobs: a new restore keeps their
	// partial files and removes those of any other job.
	restoring map[string]bool
	jobs      sync.WaitGroup
	// ready is set while Run serves: its streams, bucket and API are set
	// up (Ready).
	ready atomic.Bool
	// stopping is closed when Run's context ends. Jobs live until then,
	// not as long as the request handler that started them: a handler's
	// context ends whenever the request consumer is rebound (a NATS node
	// lost).
	stopping <-chan struct{}
}

// errCancelled is the cause of a job cancelled by request.
var errCancelled = errors.New("cancelled by request")

// New returns a Coordinator using nc.
func New(nc *nats.Conn, cfg Config) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	return &Coordinator{
		nc: nc, js: js, cfg: cfg, running: make(map[string]context.CancelCauseFunc), restoring: make(map[string]bool),
		logger: cfg.Logger.With("component", "coordinator"),
	}, nil
}

// Run sets up the streams, resumes unfinished jobs and serves requests until
// ctx is cancelled. Jobs interrupted by shutdown keep their state and are
// resumed by the next coordinator.
func (c *Coordinator) Run(ctx context.Context) error {
	c.stopping = ctx.Done()
	if err := queue.Setup(ctx, c.js, c.cfg.Streams); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	kv, err := c.js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c.kv = kv
	if err := c.resume(ctx); err != nil {
		return err
	}
	if c.cfg.Metrics != nil {
		c.jobs.Go(func() { c.pollQueues(ctx) })
	}
	c.jobs.Go(func() { c.runSchedules(ctx) })
	svc, err := c.serveAPI(ctx)
	if err != nil {
		return err
	}
	defer svc.Stop()
	c.ready.Store(true)
	defer c.ready.Store(false)
	c.logger.InfoContext(ctx, "coordinator serving")
	err = queue.Serve(ctx, c.js, queue.StreamRequests, jetstream.ConsumerConfig{
		Durable: queue.ConsumerCoordinator, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 5,
	}, queue.HandlerFunc(c.handleRequest), queue.ConsumeConfig{Workers: 4, Logger: c.logger})
	_ = svc.Stop() // no more requests through the API while the jobs wind down
	c.jobs.Wait()
	c.logger.InfoContext(context.WithoutCancel(ctx), "coordinator stopped")
	return err
}

// resume restarts every job whose record is not final.
func (c *Coordinator) resume(ctx context.Context) error {
	lister, err := c.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("coordinator: list jobs: %w", err)
	}
	for key := range lister.Keys() {
		job, err := c.loadJob(ctx, key)
		if err != nil {
			c.logger.WarnContext(ctx, "skipping unreadable job record", "job_id", key, "err", err)
			continue
		}
		if !queue.Final(job.State) {
			c.logger.InfoContext(ctx, "resuming job", "job_id", job.ID, "state", job.State)
			c.start(ctx, job)
		}
	}
	return nil
}

func (c *Coordinator) loadJob(ctx context.Context, id string) (*queue.Job, error) {
	entry, err := c.kv.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var job queue.Job
	if err := queue.Decode(entry.Value(), &job); err != nil {
		return nil, err
	}
	return &job, nil
}

func (c *Coordinator) saveJob(ctx context.Context, job *queue.Job) error {
	if _, err := c.kv.Put(ctx, job.ID, queue.Encode(job)); err != nil {
		return fmt.Errorf("save job %s: %w", job.ID, err)
	}
	return nil
}

// publishEvent publishes the job's current state. Failures are logged: an
// event is a notification, the job record is the truth. The event of a
// final state is what every follower waits for, so it is tried again for
// up to finalEventWait (a NATS node lost, the stream electing a leader);
// should it still fail, followers learn the end from the record
// (queue.Follow).
func (c *Coordinator) publishEvent(ctx context.Context, job *queue.Job, message string) {
	data := queue.Encode(job.Event(message))
	subject := queue.EventSubject(job.ID)
	if !queue.Final(job.State) {
		if _, err := c.js.Publish(ctx, subject, data); err != nil {
			c.logger.WarnContext(ctx, "publish event", "job_id", job.ID, "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalEventWait)
	defer cancel()
	id := job.ID + ".end." + strconv.Itoa(job.Epoch) // the same end, stored once however often it is tried
	for {
		_, err := c.js.Publish(ctx, subject, data, jetstream.WithMsgID(id))
		if err == nil {
			return
		}
		c.logger.WarnContext(ctx, "publish the job's final event; retrying", "job_id", job.ID, "err", err)
		select {
		case <-ctx.Done():
			c.logger.ErrorContext(ctx, "the job's final event was not published; followers read its record",
				"job_id", job.ID, "state", job.State)
			return
		case <-time.After(finalEventRetry):
		}
	}
}

// How long, and how often, the event of a job's end is tried.
const (
	finalEventWait  = 30 * time.Second
	finalEventRetry = 500 * time.Millisecond
)

// createJob records a new job, announces it and starts it. If a job with
// its ID exists (a repeated request, a schedule's window already fired) it
// does nothing and returns an error wrapping jetstream.ErrKeyExists.
func (c *Coordinator) createJob(ctx context.Context, job *queue.Job) error {
	if _, err := c.kv.Create(ctx, job.ID, queue.Encode(job)); err != nil {
		return fmt.Errorf("create job %s: %w", job.ID, err)
	}
	c.logger.InfoContext(ctx, "job queued", "job_id", job.ID, "kind", job.Kind)
	c.publishEvent(ctx, job, "")
	c.start(ctx, job)
	return nil
}

// otherRestores returns the restore jobs running besides jobID.
func (c *Coordinator) otherRestores(jobID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.restoring {
		if id != jobID {
			ids = append(ids, id)
		}
	}
	return ids
}

// start runs job in its own goroutine until it ends or the coordinator stops.
func (c *Coordinator) start(ctx context.Context, job *queue.Job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.running[job.ID]; ok {
		return
	}
	jobCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopping := c.stopping
	go func() {
		select {
		case <-stopping:
			cancel(context.Canceled)
		case <-jobCtx.Done():
		}
	}()
	c.running[job.ID] = cancel
	if job.Kind == queue.KindRestore {
		c.restoring[job.ID] = true
	}
	c.jobs.Go(func() {
		defer func() {
			c.mu.Lock()
			delete(c.running, job.ID)
			delete(c.restoring, job.ID)
			c.mu.Unlock()
			cancel(nil)
		}()
		c.run(jobCtx, job)
	})
}

// run drives one job to a final state, or returns early on shutdown.
func (c *Coordinator) run(ctx context.Context, job *queue.Job) {
	logger := c.logger.With("job_id", job.ID, "kind", job.Kind)
	job.Epoch++
	job.State, job.Error = queue.StateRunning, ""
	if job.Started.IsZero() {
		job.Started = time.Now().UTC()
	}
	err := c.saveJob(ctx, job)
	if err != nil && !errors.Is(context.Cause(ctx), errCancelled) {
		logger.ErrorContext(ctx, "job not started", "err", err)
		return
	}
	// A job cancelled before its running state is saved ends cancelled
	// below, with nothing run: the cancel waits for a final state.
	c.cfg.Metrics.JobStarted(job.Kind)
	jr := &jobRun{c: c, job: job, logger: logger, started: time.Now()}
	if err == nil {
		c.publishEvent(ctx, job, "")
		logger.InfoContext(ctx, "job running", "epoch", job.Epoch)
	}
	switch {
	case err != nil:
	case job.Kind == queue.KindBackup:
		err = jr.backup(ctx)
	case job.Kind == queue.KindRestore:
		err = jr.restore(ctx)
	case job.Kind == queue.KindPrune:
		err = jr.prune(ctx)
	case job.Kind == queue.KindCheck:
		err = jr.check(ctx)
	default:
		err = fmt.Errorf("unknown job kind %q", job.Kind)
	}
	endCtx := context.WithoutCancel(ctx)
	jr.cleanup(endCtx)
	switch {
	case err == nil:
		job.State = queue.StateSucceeded
	case errors.Is(context.Cause(ctx), errCancelled):
		job.State, job.Error = queue.StateCancelled, errCancelled.Error()
	case ctx.Err() != nil:
		logger.InfoContext(endCtx, "job interrupted by shutdown; it resumes when a coordinator starts")
		c.cfg.Metrics.JobEnded(job.Kind, "interrupted")
		return
	default:
		job.State, job.Error = queue.StateFailed, err.Error()
	}
	job.Finished = time.Now().UTC()
	if job.Kind == queue.KindRestore {
		jr.dropGrant(endCtx)
	}
	ended(job)
	c.cfg.Metrics.JobEnded(job.Kind, job.State)
	if err := c.saveJob(endCtx, job); err != nil {
		logger.ErrorContext(endCtx, "save final job state", "err", err)
	}
	c.publishEvent(endCtx, job, "")
	logger.InfoContext(endCtx, "job ended", "state", job.State, "err", job.Error, "snapshot_id", job.SnapshotID)
}

// waitForReader asks the readers of host to stat path ("" only checks one
// is there; countLimit > 0 also counts a directory's files), retrying until
// one answers or ReaderTimeout passes.
func (jr *jobRun) waitForReader(ctx context.Context, host, path string, countLimit int64) (*queue.StatReply, error) {
	deadline := time.Now().Add(jr.c.cfg.ReaderTimeout)
	announced := false
	for {
		timeout := 10 * time.Second
		if countLimit > 0 {
			timeout = 5 * time.Minute // counting a large tree takes a while
		}
		reqCtx, cancel := context.WithTimeout(ctx, timeout)
		msg, err := jr.c.nc.RequestWithContext(reqCtx, queue.StatSubject(host),
			queue.Encode(&queue.StatRequest{V: queue.MessageVersion, Path: path, CountLimit: countLimit}))
		cancel()
		if err == nil {
			var reply queue.StatReply
			if err := queue.Decode(msg.Data, &reply); err != nil {
				return nil, fmt.Errorf("reader on %s: %w", host, err)
			}
			if reply.Error != "" {
				return nil, fmt.Errorf("reader on %s: %s", host, reply.Error)
			}
			return &reply, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no reader serves host %q (waited %s; start `reader --host %s` there)", host, jr.c.cfg.ReaderTimeout, host)
		}
		if !announced {
			jr.c.publishEvent(ctx, jr.job, fmt.Sprintf("waiting for a reader on host %s", host))
			announced = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// isTransient reports whether err is a NATS hiccup worth retrying.
func isTransient(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) || isUnavailable(err)
}

// isUnavailable reports whether err is JetStream answering that it cannot
// serve now (no leader yet, a cluster still electing one).
func isUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503
}

// pollQueues publishes the depth of the work queues as metrics every few
// seconds: the backlog readers and compressors have not taken yet and what
// they hold unacknowledged (the signal an autoscaler acts on).
func (c *Coordinator) pollQueues(ctx context.Context) {
	ticker := time.NewTicker(5 * time.Second)
	defer ticker.Stop()
	fleet := newObserver(c)
	for {
		fleet.observe(ctx)
		for _, name := range []string{queue.StreamReady, queue.StreamWork} {
			stream, err := c.js.Stream(ctx, name)
			if err != nil {
				continue
			}
			for info := range stream.ListConsumers(ctx).Info() {
				c.cfg.Metrics.Queue(name, info.Name, info.NumPending, uint64(info.NumAckPending))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
