package reader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/internal/bufpool"
	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
)

// DefaultWorkers is a reader's default concurrency: chunks read or written
// at once. A restore's direct writes wait on the disk, and a backup's reads
// on a compressor, so it is well above the CPU count (docs/operations.md
// says how it was chosen).
const DefaultWorkers = 12

// DefaultMaxHeld bounds the raw chunk bytes a reader holds for the
// compressors to fetch, whatever the fleet's size.
const DefaultMaxHeld = 1 << 30

// Config configures a Reader.
type Config struct {
	// Host is the name this reader serves; work for HOST:PATH comes here.
	Host string
	// Workers is how many chunks are read or written at once; 0 means
	// DefaultWorkers.
	Workers int
	// Repos opens repositories (restores, the check of a parent's chunks).
	// Required.
	Repos *repository.Cache
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// DrainTimeout bounds how long in-flight work may finish after shutdown
	// begins; 0 means 30s.
	DrainTimeout time.Duration
	// Metrics, if set, records chunks, bytes and stage durations.
	Metrics *metrics.Metrics
	// Compress, if set, compresses and stores chunks in this process,
	// sparing them the trip to a compressor.
	Compress Compressor
	// Overflow sends a chunk to the fleet's compressors when Compress has
	// no worker free; without it the chunk waits for one (a fleet in one
	// process, where the compressors would share the same CPUs). Without
	// Compress every chunk goes to the fleet.
	Overflow bool
	// MaxHeld bounds the bytes of raw chunks held for the compressors to
	// fetch; 0 means DefaultMaxHeld. Within it the reader holds about two
	// chunks per live compressor worker, so the window follows the fleet.
	MaxHeld int64
	// DataAddr, if set, is the address ("host:port", port 0 for any) a
	// data server listens on: compressors that reach it fetch chunks over
	// HTTP, which costs less than through NATS; the others fall back to
	// NATS. Empty serves chunks over NATS only.
	DataAddr string
	// DataAdvertise is the address compressors reach the data server at;
	// empty means the address it listens on.
	DataAdvertise string
	// Identity is this host's age identity: the reader announces its
	// recipient in its heartbeat, and restore clients wrap the grants of
	// restores of encrypted repositories to it (docs/encryption.md section
	// 8). Nil: this reader restores no encrypted repository.
	Identity *age.X25519Identity
}

// Compressor stores raw chunks in the reader's own process (a
// compressor.Compressor).
type Compressor interface {
	// TryStore stores the chunk, publishing its completion, when a worker
	// is free now, and reports false at once when none is.
	TryStore(ctx context.Context, jobID string, index int, data []byte) (bool, error)
	// Store waits for a free worker, then stores the chunk.
	Store(ctx context.Context, jobID string, index int, data []byte) error
}

func (c *Config) validate() error {
	if err := queue.CheckToken("host", c.Host); err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	if c.Repos == nil {
		return errors.New("reader: Config.Repos is required")
	}
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.MaxHeld = cmp.Or(c.MaxHeld, DefaultMaxHeld)
	if c.Workers < 0 || c.MaxHeld < 0 {
		return fmt.Errorf("reader: Workers %d and MaxHeld %d must be positive", c.Workers, c.MaxHeld)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Reader is the reader service of one host.
type Reader struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    Config
	logger *slog.Logger
	bufs   *bufpool.Pool // chunk buffers, aligned so restores write them directly
	sealed *bufpool.Pool // chunks sealed for a fetch, until sent
	// fetching admits the fetches served at once, over NATS and HTTP
	// alike: Workers of them.
	fetching chan struct{}
	held     *heldChunks
	// volumes holds the volume targets of restores open, each written
	// through descriptors opened once.
	volumes *openVolumes
	data    *dataServer // nil without Config.DataAddr
	grants  *grants
	// stopping ends when shutdown begins: chunks waiting for room to be
	// held give up then, while work in flight finishes.
	stopping context.Context

	// chunks and bytes count the chunks read or written; inFlight what is
	// being handled now. They feed the reader's heartbeat.
	chunks, bytes, inFlight atomic.Int64
	// storedHere counts the chunks Config.Compress stored.
	storedHere atomic.Int64
	started    time.Time
	id         string
}

// New returns a Reader using nc.
func New(nc *nats.Conn, cfg Config) (*Reader, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("reader: %w", err)
	}
	machine, _ := os.Hostname()
	r := &Reader{
		nc: nc, js: js, cfg: cfg, logger: cfg.Logger.With("component", "reader", "host", cfg.Host),
		bufs: bufpool.New(cfg.Workers, directio.Alloc), sealed: bufpool.New(cfg.Workers, nil), fetching: make(chan struct{}, cfg.Workers),
		volumes: newOpenVolumes(),
		id:      fmt.Sprintf("%s-%s-%d", cfg.Host, machine, os.Getpid()), stopping: context.Background(),
		grants: newGrants(cfg.Identity),
	}
	r.held = newHeldChunks(cfg.MaxHeld)
	r.held.release = r.release
	if cfg.DataAddr != "" {
		if r.data, err = newDataServer(r, cfg.DataAddr, cfg.DataAdvertise); err != nil {
			return nil, fmt.Errorf("reader: %w", err)
		}
	}
	return r, nil
}

// Run serves until ctx is cancelled, then drains in-flight work.
func (r *Reader) Run(ctx context.Context) error {
	r.stopping = ctx
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stat, err := r.nc.QueueSubscribe(queue.StatSubject(r.cfg.Host), queue.ReaderQueueGroup, r.statHandler(ctx, &wg))
	if err != nil {
		return fmt.Errorf("reader: subscribe: %w", err)
	}
	defer stat.Unsubscribe()
	fetch, err := r.nc.QueueSubscribe(queue.FetchSubject(r.cfg.Host), queue.ReaderQueueGroup, r.fetchHandler(ctx, &wg))
	if err != nil {
		return fmt.Errorf("reader: subscribe: %w", err)
	}
	defer fetch.Unsubscribe()
	if r.data != nil {
		wg.Go(func() { r.data.serve(ctx) })
	}
	wg.Go(func() { r.held.followFleet(ctx, r.js) })
	wg.Go(func() { r.dropOrphans(ctx) })

	r.logger.InfoContext(ctx, "reader serving", "workers", r.cfg.Workers, "direct", r.directURL())
	r.started = time.Now().UTC()
	wg.Go(func() { queue.Heartbeat(ctx, r.js, r.status) })
	mux := queue.NewMux(2) // bulk.work.<op>.<host>.<job>
	queue.HandleOp(mux, queue.OpRead, r.handleRead)
	queue.HandleOp(mux, queue.OpScan, r.handleScan)
	r.handleRestore(mux)
	err = queue.Serve(ctx, r.js, queue.StreamWork, jetstream.ConsumerConfig{
		Durable:       queue.ConsumerReader(r.cfg.Host),
		FilterSubject: queue.WorkFilter(r.cfg.Host),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 1024,
		MaxDeliver:    -1,
	}, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		r.inFlight.Add(1)
		defer r.inFlight.Add(-1)
		// While the repository is retried (a parent's chunk checked,
		// a chunk stored or restored), the item is kept.
		keep := keeper(msg)
		ctx = retry.WithNotify(ctx, func(int, time.Duration, error) error { keep(); return nil })
		err := mux.Handle(ctx, msg)
		if err == nil {
			r.chunks.Add(1)
		}
		return err
	}), queue.ConsumeConfig{
		Workers: r.cfg.Workers, DrainTimeout: r.cfg.DrainTimeout, Logger: r.logger, OnRetry: r.cfg.Metrics.Retry,
	})
	cancel()
	r.volumes.closeAll()
	r.logger.InfoContext(context.WithoutCancel(ctx), "reader stopped", "chunks", r.chunks.Load(), "stored_here", r.storedHere.Load())
	return err
}

// status is this reader's heartbeat.
func (r *Reader) status() queue.WorkerStatus {
	s := queue.WorkerStatus{
		ID: r.id, Role: queue.RoleReader, Host: r.cfg.Host, Started: r.started, Workers: r.cfg.Workers,
		InFlight: r.inFlight.Load(), Chunks: r.chunks.Load(), Bytes: r.bytes.Load(),
	}
	if r.cfg.Identity != nil {
		s.Recipient = r.cfg.Identity.Recipient().String()
	}
	return s
}

func (r *Reader) buffer(n int64) []byte { return r.bufs.Get(int(n)) }

func (r *Reader) release(b []byte) { r.bufs.Put(b) }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
