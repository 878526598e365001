// Package metrics is what every bulkbackup process exposes to Prometheus:
// chunks and bytes through each stage, compression, stage durations, retries
// and errors, job counts and queue depth, served on /metrics next to the
// /healthz and /readyz probes. A nil *Metrics records nothing, so services
// take one optionally.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds one process's collectors.
type Metrics struct {
	reg *prometheus.Registry

	chunks     *prometheus.CounterVec
	rawBytes   *prometheus.CounterVec
	storedByte *prometheus.CounterVec
	stage      *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	errs       *prometheus.CounterVec
	inFlight   *prometheus.GaugeVec
	jobs       *prometheus.CounterVec
	running    *prometheus.GaugeVec
	queue      *prometheus.GaugeVec
}

// New returns the collectors of a process in role ("coordinator", "reader",
// "compressor", "fleet"), registered with Go runtime and process metrics.
func New(role string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := prometheus.Labels{"role": role}
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	m := &Metrics{reg: reg}
	m.chunks = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_chunks_total", Help: "Chunks handled, by outcome (stored, deduplicated, zero, unchanged, written, read).", ConstLabels: labels,
	}, []string{"outcome"})).(*prometheus.CounterVec)
	m.rawBytes = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_raw_bytes_total", Help: "Raw (uncompressed) chunk bytes handled, by outcome.", ConstLabels: labels,
	}, []string{"outcome"})).(*prometheus.CounterVec)
	m.storedByte = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_stored_bytes_total", Help: "Bytes written to repositories (compressed chunk objects and staged chunks).", ConstLabels: labels,
	}, []string{"kind"})).(*prometheus.CounterVec)
	m.stage = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "bulk_stage_seconds", Help: "Time spent per chunk in each stage (read, hash, compress, put, get, write, publish).",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"stage"})).(*prometheus.HistogramVec)
	m.retries = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_retries_total", Help: "Work retried, by reason.", ConstLabels: labels,
	}, []string{"reason"})).(*prometheus.CounterVec)
	m.errs = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_errors_total", Help: "Errors, by operation.", ConstLabels: labels,
	}, []string{"op"})).(*prometheus.CounterVec)
	m.inFlight = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_in_flight_chunks", Help: "Chunks being handled right now.", ConstLabels: labels,
	}, []string{"op"})).(*prometheus.GaugeVec)
	m.jobs = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_jobs_total", Help: "Jobs ended, by kind and final state.", ConstLabels: labels,
	}, []string{"kind", "state"})).(*prometheus.CounterVec)
	m.running = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_jobs_running", Help: "Jobs running now, by kind.", ConstLabels: labels,
	}, []string{"kind"})).(*prometheus.GaugeVec)
	m.queue = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_queue_messages", Help: "Messages in a work queue: pending (not yet delivered) and ack_pending (delivered, not yet acknowledged).", ConstLabels: labels,
	}, []string{"stream", "consumer", "state"})).(*prometheus.GaugeVec)
	return m
}

// Chunk counts one chunk of raw bytes with its outcome.
func (m *Metrics) Chunk(outcome string, raw int64) {
	if m == nil {
		return
	}
	m.chunks.WithLabelValues(outcome).Inc()
	m.rawBytes.WithLabelValues(outcome).Add(float64(raw))
}

// Stored counts bytes written to a repository.
func (m *Metrics) Stored(kind string, n int64) {
	if m == nil {
		return
	}
	m.storedByte.WithLabelValues(kind).Add(float64(n))
}

// Stage records how long one chunk spent in stage since start.
func (m *Metrics) Stage(stage string, start time.Time) {
	if m == nil {
		return
	}
	m.stage.WithLabelValues(stage).Observe(time.Since(start).Seconds())
}

// Retry counts a retry.
func (m *Metrics) Retry(reason string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(reason).Inc()
}

// Error counts a failed operation.
func (m *Metrics) Error(op string) {
	if m == nil {
		return
	}
	m.errs.WithLabelValues(op).Inc()
}

// Begin marks a chunk in flight for op and returns the function that ends it.
func (m *Metrics) Begin(op string) func() {
	if m == nil {
		return func() {}
	}
	g := m.inFlight.WithLabelValues(op)
	g.Inc()
	return g.Dec
}

// JobStarted and JobEnded track jobs.
func (m *Metrics) JobStarted(kind string) {
	if m == nil {
		return
	}
	m.running.WithLabelValues(kind).Inc()
}

// JobEnded counts a job that reached a final state (or stopped at shutdown,
// state "interrupted").
func (m *Metrics) JobEnded(kind, state string) {
	if m == nil {
		return
	}
	m.running.WithLabelValues(kind).Dec()
	m.jobs.WithLabelValues(kind, state).Inc()
}

// Queue sets the depth of a work queue.
func (m *Metrics) Queue(stream, consumer string, pending, ackPending uint64) {
	if m == nil {
		return
	}
	m.queue.WithLabelValues(stream, consumer, "pending").Set(float64(pending))
	m.queue.WithLabelValues(stream, consumer, "ack_pending").Set(float64(ackPending))
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Serve serves /metrics, /healthz (the process is up) and /readyz (ready()
// reports true: connected and serving) on addr until ctx is cancelled.
func Serve(ctx context.Context, addr string, m *Metrics, ready func() error, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	})
	defer stop()
	if logger != nil {
		logger.InfoContext(ctx, "serving metrics and health", "addr", ln.Addr().String())
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
