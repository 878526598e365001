// Package fleet runs a whole bulkbackup fleet in one process: an embedded
// NATS server with JetStream, the coordinator, a reader for this host and a
// pool of compressors, all talking over the same subjects a distributed
// fleet uses. By default the reader compresses and stores the chunks it
// reads with the process's compressors, as a reader with --compress does;
// Config.DataPlane makes it hand them to the compressors the way a reader
// of another machine does instead. It is bulkctl's default when no NATS URL
// is given, and the fleet of the demo and the integration tests.
package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

// Config configures a Fleet. Zero values take defaults.
type Config struct {
	// Dir holds the embedded server's JetStream data; required.
	Dir string
	// Host is the reader's host name; defaults to service.LocalHost().
	Host string
	// Compressors is the number of compressor workers; 0 means one per CPU.
	Compressors int
	// Readers is the number of reader workers; 0 means the reader's default.
	Readers int
	// MaxHeld bounds the raw chunk bytes the reader holds for the
	// compressors (with DataHTTP or DataNATS); 0 means the reader's
	// default.
	MaxHeld int64
	// MaxPayload bounds one NATS message; 0 means broker.DefaultMaxPayload.
	MaxPayload int32
	// DataPlane is how raw chunks reach the compressors: DataLocal (the
	// default), DataHTTP or DataNATS.
	DataPlane DataPlane
	// Repos opens repositories for the coordinator; required.
	Repos *repository.Cache
	// WorkerRepos opens repositories for the reader and the compressors,
	// which may retry a failing repository longer than the coordinator's
	// checks should wait (pkg/store/retry); nil means Repos.
	WorkerRepos *repository.Cache
	// Coordinator overrides coordinator settings (Repos, Logger and Streams
	// are filled in).
	Coordinator coordinator.Config
	// Logger receives every component's logs; nil discards them.
	Logger *slog.Logger
	// Metrics, if set, is shared by every component.
	Metrics *metrics.Metrics
	// HostIdentity is the reader's host identity, which restores of
	// encrypted repositories wrap their grants to (Recipient); nil means
	// a new one, kept in memory only.
	HostIdentity *age.X25519Identity
}

// DataPlane names how the reader hands raw chunks to the compressors.
type DataPlane string

// The data planes of Config.DataPlane.
const (
	// DataLocal: the reader stores each chunk through the compressors of
	// its process, in memory (reader.Config.Compress).
	DataLocal DataPlane = "local"
	// DataHTTP: the reader holds each chunk and announces it on the
	// ready stream; a compressor fetches it from the reader's data server
	// on 127.0.0.1, as the compressors of other machines do.
	DataHTTP DataPlane = "http"
	// DataNATS: as DataHTTP, but the compressors fetch the bytes by
	// request/reply through the NATS server (a reader without a data
	// server, or one the compressors cannot reach).
	DataNATS DataPlane = "nats"
)

// ParseDataPlane returns the DataPlane s names ("" is DataLocal).
func ParseDataPlane(s string) (DataPlane, error) {
	switch DataPlane(s) {
	case "", DataLocal:
		return DataLocal, nil
	case DataHTTP, DataNATS:
		return DataPlane(s), nil
	}
	return "", fmt.Errorf("data plane %q: want local, http or nats", s)
}

// Fleet is a running single-process fleet.
type Fleet struct {
	broker *broker.Broker
	conns  []*nats.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
	host   string
	id     *age.X25519Identity
}

// Start starts the server and every service, and returns once they serve.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Repos == nil {
		return nil, errors.New("fleet: Config.Repos is required")
	}
	if cfg.Host == "" {
		cfg.Host = service.LocalHost()
	}
	plane, err := ParseDataPlane(string(cfg.DataPlane))
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	workerRepos := cmp.Or(cfg.WorkerRepos, cfg.Repos)
	if cfg.HostIdentity == nil {
		if cfg.HostIdentity, err = age.GenerateX25519Identity(); err != nil {
			return nil, fmt.Errorf("fleet: host identity: %w", err)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := broker.Start(broker.Config{StoreDir: cfg.Dir, InProcessOnly: true, MaxPayload: cfg.MaxPayload, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	f := &Fleet{broker: b, host: cfg.Host, id: cfg.HostIdentity}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	connect := func(name string) (*nats.Conn, error) {
		nc, err := b.Connect(name)
		if err == nil {
			f.conns = append(f.conns, nc)
		}
		return nc, err
	}

	cc := cfg.Coordinator
	cc.Repos, cc.Logger, cc.Metrics = cfg.Repos, logger, cfg.Metrics
	nc, err := connect("coordinator")
	if err != nil {
		f.Close()
		return nil, err
	}
	coord, err := coordinator.New(nc, cc)
	if err != nil {
		f.Close()
		return nil, err
	}
	coordDone := make(chan struct{})
	f.spawn(func() error { defer close(coordDone); return coord.Run(runCtx) })
	// Start the workers only once the coordinator serves (its request
	// consumer exists): its Run updates the streams, and a stream update
	// racing a worker's consumer creation trips a data race inside
	// nats-server (fileStore.UpdateConfig vs fileStore.ConsumerStore).
	if err := waitServing(ctx, mustJS(nc), coordDone); err != nil {
		return nil, errors.Join(err, f.Close())
	}

	if nc, err = connect("compressor"); err != nil {
		f.Close()
		return nil, err
	}
	comp, err := compressor.New(nc, compressor.Config{
		Workers: cfg.Compressors, Repos: workerRepos, Logger: logger, Name: "fleet-" + cfg.Host, Metrics: cfg.Metrics,
	})
	if err != nil {
		f.Close()
		return nil, err
	}

	if nc, err = connect("reader"); err != nil {
		f.Close()
		return nil, err
	}
	rc := reader.Config{Host: cfg.Host, Workers: cfg.Readers, Repos: workerRepos, Logger: logger, Metrics: cfg.Metrics, MaxHeld: cfg.MaxHeld,
		Identity: cfg.HostIdentity}
	// The compressors also serve the ready stream, for readers that hand
	// chunks over rather than store them here.
	f.spawn(func() error { return comp.Run(runCtx) })
	switch plane {
	case DataLocal:
		// The compressors share this process's CPUs with the reader:
		// a chunk waits for one of them rather than being announced to
		// the others (there are none).
		rc.Compress = comp
	case DataHTTP:
		rc.DataAddr = "127.0.0.1:0"
	}
	rd, err := reader.New(nc, rc)
	if err != nil {
		f.Close()
		return nil, err
	}
	f.spawn(func() error { return rd.Run(runCtx) })
	return f, nil
}

func (f *Fleet) spawn(run func() error) {
	f.wg.Go(func() {
		if err := run(); err != nil {
			f.errMu.Lock()
			f.err = errors.Join(f.err, err)
			f.errMu.Unlock()
		}
	})
}

// Host returns the host name the fleet's reader serves.
func (f *Fleet) Host() string { return f.host }

// Recipient returns the age recipient of the reader's host identity: what
// a restore of an encrypted repository wraps its grant to.
func (f *Fleet) Recipient() age.Recipient { return f.id.Recipient() }

// Connect returns a new client connection to the fleet's server.
func (f *Fleet) Connect(name string) (*nats.Conn, error) { return f.broker.Connect(name) }

// Close stops every service (draining in-flight work), then the server. It
// returns the services' errors, if any.
func (f *Fleet) Close() error {
	if f.cancel != nil {
		f.cancel()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
	for _, nc := range f.conns {
		nc.Close()
	}
	f.broker.ShutdownPrivate()
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.err
}

// waitServing waits until the coordinator's request consumer exists, the
// coordinator stops (done closed), or ctx ends.
func waitServing(ctx context.Context, js jetstream.JetStream, done <-chan struct{}) error {
	for {
		if _, err := js.Consumer(ctx, queue.StreamRequests, queue.ConsumerCoordinator); err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("fleet: coordinator stopped while starting")
		case <-ctx.Done():
			return fmt.Errorf("fleet: waiting for the coordinator: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func mustJS(nc *nats.Conn) jetstream.JetStream {
	js, err := jetstream.New(nc)
	if err != nil {
		panic(fmt.Sprintf("fleet: jetstream with no options: %v", err))
	}
	return js
}
