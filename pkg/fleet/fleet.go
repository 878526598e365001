// Package fleet runs a whole bulkbackup fleet in one process: an embedded
// NATS server with JetStream, the coordinator, a reader for this host and a
// pool of compressors, all talking over the same subjects a distributed
// fleet uses, except that the reader hands raw chunks to the compressors in
// memory rather than through the raw queue (Config.RawViaNATS). It is
// bulkctl's default when no NATS URL is given, and the fleet of the demo
// and the integration tests.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// Config configures a Fleet. Zero values take defaults.
type Config struct {
	// Dir holds the embedded server's JetStream data; required.
	Dir string
	// Host is the reader's host name; defaults to LocalHost().
	Host string
	// Compressors is the number of compressor workers; 0 means one per CPU.
	Compressors int
	// Readers is the number of reader workers; 0 means the reader's default.
	Readers int
	// RawMaxBytes bounds raw chunk bytes in flight; 0 means the default.
	RawMaxBytes int64
	// MaxPayload bounds one NATS message; 0 means broker.DefaultMaxPayload.
	MaxPayload int32
	// RawViaNATS sends raw chunks from the reader to the compressors
	// through the NATS raw queue, as a fleet of separate processes does.
	// By default they are handed over in memory, which saves every raw
	// byte its copies through the server.
	RawViaNATS bool
	// StoreTimeout bounds how long the compressor retries a chunk while
	// the repository fails; 0 means compressor.DefaultStoreTimeout.
	StoreTimeout time.Duration
	// Repos opens repositories; required.
	Repos *repository.Cache
	// Coordinator overrides coordinator settings (Repos, Logger and Streams
	// are filled in).
	Coordinator coordinator.Config
	// Logger receives every component's logs; nil discards them.
	Logger *slog.Logger
	// Metrics, if set, is shared by every component.
	Metrics *metrics.Metrics
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
}

// LocalHost returns this machine's short host name, made safe as a subject
// token ("local" if it has none).
func LocalHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	h, _, _ = strings.Cut(h, ".")
	var b strings.Builder
	for _, r := range h {
		if r == '-' || r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Start starts the server and every service, and returns once they serve.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Repos == nil {
		return nil, errors.New("fleet: Config.Repos is required")
	}
	if cfg.Host == "" {
		cfg.Host = LocalHost()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := broker.Start(broker.Config{StoreDir: cfg.Dir, InProcessOnly: true, MaxPayload: cfg.MaxPayload, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	f := &Fleet{broker: b, host: cfg.Host}
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
	cc.Streams.RawMaxBytes = cfg.RawMaxBytes
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
		Workers: cfg.Compressors, Repos: cfg.Repos, Logger: logger, Name: "fleet-" + cfg.Host, Metrics: cfg.Metrics, StoreTimeout: cfg.StoreTimeout,
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	f.spawn(func() error { return comp.Run(runCtx) })

	if nc, err = connect("reader"); err != nil {
		f.Close()
		return nil, err
	}
	rc := reader.Config{Host: cfg.Host, Workers: cfg.Readers, Repos: cfg.Repos, Logger: logger, Metrics: cfg.Metrics}
	if !cfg.RawViaNATS {
		rc.Handoff = comp.Handoff
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
