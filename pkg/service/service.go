// Package service holds the wiring the bulkbackup binaries share: the
// logger (JSON for daemons, text on a terminal), the NATS connection, and the
// repository cache configured from the environment.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/term"

	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// DefaultNATSURL is where services look for NATS when no URL is given: the
// coordinator's embedded server on its default address.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// NewLogger returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("json", "text", or "" for text on a terminal and JSON
// otherwise).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
}

// ConnectOptions are the NATS client settings every binary takes.
type ConnectOptions struct {
	URL  string
	Name string
	// User and Password come from BULK_NATS_USER / BULK_NATS_PASSWORD;
	// CredsFile from BULK_NATS_CREDS. Secrets never come from flags.
	User, Password, CredsFile string
	// CAFile, from BULK_NATS_CA, is a PEM file of the certificate
	// authorities trusted for the NATS server's TLS certificate (instead of
	// the system's). Setting it requires TLS of the server.
	CAFile string
	Logger *slog.Logger
}

// NATSFromEnv fills in credentials from the environment.
func NATSFromEnv(o ConnectOptions) ConnectOptions {
	o.User = cmpOr(o.User, os.Getenv("BULK_NATS_USER"))
	o.Password = cmpOr(o.Password, os.Getenv("BULK_NATS_PASSWORD"))
	o.CredsFile = cmpOr(o.CredsFile, os.Getenv("BULK_NATS_CREDS"))
	o.CAFile = cmpOr(o.CAFile, os.Getenv("BULK_NATS_CA"))
	return o
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Connect connects to NATS, retrying until ctx is done so services can
// start before the server; it logs disconnections and reconnections.
func Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil on a deliberate close
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.CAFile != "" {
		ca := nats.RootCAs(o.CAFile)
		if err := ca(&nats.Options{}); err != nil { // an unreadable file is no reason to retry
			return nil, fmt.Errorf("BULK_NATS_CA: %w", err)
		}
		opts = append(opts, ca)
	}
	for attempt := 0; ; attempt++ {
		nc, err := nats.Connect(o.URL, opts...)
		if err == nil {
			return nc, nil
		}
		var certErr *tls.CertificateVerificationError
		refused := errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
		if refused || errors.As(err, &certErr) || attempt >= 20 {
			return nil, fmt.Errorf("connect to NATS at %s: %w", o.URL, err)
		}
		if attempt == 0 {
			logger.Warn("waiting for NATS", "url", o.URL, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Repos returns a repository cache whose S3 stores take their endpoint and
// credentials from the environment (storeurl.S3FromEnv), with endpoint
// overriding the environment's when set, and whose encrypted repositories
// open with keys (WriteKeysFromEnv; nil opens them locked). With
// retryFor > 0 every store retries failures that may pass (the object
// store restarting, a network blip) for up to that long (pkg/store/retry),
// logging each retry; workers that hold queue messages meanwhile use it. 0
// fails such calls at once. It never creates a repository: that is
// bulkctl init's.
func Repos(endpoint string, retryFor time.Duration, keys repository.KeyFunc, logger *slog.Logger) *repository.Cache {
	s3 := storeurl.S3FromEnv()
	if endpoint != "" {
		s3.Endpoint = endpoint
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	open := func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{S3: s3, Create: create})
	}
	opts := repository.OpenOptions{Keys: keys}
	if retryFor <= 0 {
		return repository.NewCache(open, opts)
	}
	return repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		cfg := retry.Config{MaxElapsed: retryFor, OnRetry: func(ctx context.Context, op, key string, attempt int, waited time.Duration, err error) {
			logger.DebugContext(ctx, "store call failed; retrying", "repo", repo, "op", op, "key", key,
				"attempt", attempt, "waited", waited.Round(time.Millisecond), "err", err)
		}}
		return retry.Open(ctx, cfg, repo, func(ctx context.Context) (store.Store, error) { return open(ctx, repo, create) })
	}, opts)
}

// Together runs every fn until ctx is done or one of them returns, then
// stops the others and returns their errors: the parts of one service.
func Together(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			err := fn(ctx)
			cancel()
			errs <- err
		}()
	}
	var all []error
	for range fns {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// LocalHost returns this machine's short host name, made safe as a subject
// token ("local" if it has none): the host name a reader serves by
// default.
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

// Run runs a service until ctx is cancelled, serving its metrics and health
// probes on metricsAddr when one is given. The service is ready while its
// NATS connection is up and every one of checks (the service's own: the
// coordinator's streams and API are set up) returns nil.
func Run(ctx context.Context, metricsAddr string, m *metrics.Metrics, nc *nats.Conn, logger *slog.Logger, run func(context.Context) error, checks ...func() error) error {
	if metricsAddr == "" {
		return run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("NATS %s", strings.ToLower(nc.Status().String()))
		}
		for _, check := range checks {
			if err := check(); err != nil {
				return err
			}
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		err := metrics.Serve(ctx, metricsAddr, m, ready, logger)
		if err != nil {
			cancel() // a service that cannot be observed as asked stops
		}
		errc <- err
	}()
	err := run(ctx)
	cancel()
	if herr := <-errc; err == nil {
		err = herr
	}
	return err
}

// DefaultGCPercent is the garbage collector's target (GOGC) of the
// bulkbackup binaries unless GOGC is set. Their memory is mostly a few
// long-lived chunk buffers, and they allocate little else (a 2 GiB backup
// allocates about 50 MB), so collecting once garbage reaches a quarter of
// the live heap rather than all of it costs no measurable CPU (the
// collector stays near 1% of it, also for a 100,000-file tree), and keeps
// peak memory near what the in-flight chunks need. A longer run reaches
// the collector's full headroom and a shorter one does not: on the
// benchmark machine the peak RSS of an 8 GiB backup was 1.33-1.35x that of
// a 1 GiB one with the default of 100, 1.17-1.29x with 50 and 1.06-1.14x
// with 25, CPU time unchanged.
const DefaultGCPercent = 25

// TuneGC applies DefaultGCPercent unless the environment sets GOGC.
func TuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
