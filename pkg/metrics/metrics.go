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
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/bulkbackup/bulkbackup/pkg/version"
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
	requests   *prometheus.CounterVec
	workers    *prometheus.GaugeVec
	idle       *prometheus.GaugeVec
	schedNext  *prometheus.GaugeVec
	schedFired *prometheus.GaugeVec
	schedSkip  *prometheus.GaugeVec
}

// Roles: what New is given, and the label values each one's series start
// with.
const (
	RoleCoordinator = "coordinator"
	RoleReader      = "reader"
	RoleCompressor  = "compressor"
	// RoleFleet is the whole fleet in one process (bulkctl without --nats).
	RoleFleet = "fleet"
)

// The label values of the series a process of each role exposes from its
// start, at zero, so that rates and alerts see a series before the first
// event (a fresh compressor has stored nothing yet, and says so). The
// lists are exported for tests that keep them in step with what the
// services record.
var (
	// CompressorOutcomes are bulk_chunks_total outcomes of compressors
	// (and of readers, which compress what they have room for).
	CompressorOutcomes = []string{"stored", "deduplicated"}
	// ReaderOutcomes are bulk_chunks_total outcomes of readers.
	ReaderOutcomes = []string{"zero", "unchanged", "sent", "fetched", "reread", "written"}
	// CompressorStages and ReaderStages are bulk_stage_seconds stages.
	CompressorStages = []string{"fetch", "hash", "compress", "put"}
	ReaderStages     = []string{"read", "write"}
	// CompressorErrors and ReaderErrors are bulk_errors_total operations;
	// "message" is a queue message whose handling failed (retried, or
	// given up as permanent).
	CompressorErrors = []string{"stat", "put", "message"}
	ReaderErrors     = []string{"read", "write", "message"}
	// RetryReasons are bulk_retries_total reasons.
	RetryReasons = []string{"store", "error", "retry_after"}
	// JobKinds and JobStates are bulk_jobs_total's labels ("interrupted":
	// stopped by a coordinator's shutdown, resumed by the next).
	JobKinds  = []string{"backup", "restore", "prune", "check"}
	JobStates = []string{"succeeded", "failed", "cancelled", "interrupted"}
	// RequestKinds and RequestOutcomes are bulk_requests_total's labels:
	// a request accepted (a new job, a repeat of one, a job cancelled), or
	// rejected as invalid (malformed, or failing validation), conflicting
	// (a job ID taken by another request, a cancel of an ended job), for
	// an unknown job, or because the coordinator failed.
	RequestKinds    = []string{"backup", "restore", "prune", "check", "cancel"}
	RequestOutcomes = []string{"accepted", "repeated", "invalid", "conflict", "not_found", "failed"}
	// WorkerRoles are bulk_workers_alive roles.
	WorkerRoles = []string{"reader", "compressor"}
)

// New returns the collectors of a process in role (a Role constant),
// registered with Go runtime and process metrics and bulk_build_info. The
// role is a label of bulk_build_info only: every other series is told
// apart by the scrape target's own labels (job, instance).
func New(role string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	m := &Metrics{reg: reg}
	buildInfo := f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_build_info", Help: "Always 1: the build this process runs (version: git describe, stamped at build time) and its role.",
	}, []string{"version", "goversion", "role"})).(*prometheus.GaugeVec)
	buildInfo.WithLabelValues(version.Version, runtime.Version(), role).Set(1)
	m.chunks = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_chunks_total",
		Help: "Chunks handled, by outcome: stored (new in the repository), deduplicated (already there), zero (all zeros, not stored), " +
			"unchanged (as in the parent snapshot), sent (read and handed on to be stored), fetched (served to a compressor), " +
			"reread (read again for a compressor), written (restored).",
	}, []string{"outcome"})).(*prometheus.CounterVec)
	m.rawBytes = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_raw_bytes_total", Help: "Raw (uncompressed) chunk bytes handled, by outcome (as bulk_chunks_total).",
	}, []string{"outcome"})).(*prometheus.CounterVec)
	m.storedByte = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_stored_bytes_total", Help: "Bytes written to repositories, by kind (chunk: compressed chunk objects).",
	}, []string{"kind"})).(*prometheus.CounterVec)
	m.stage = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bulk_stage_seconds",
		Help:    "Time spent per chunk in each stage (read, write, fetch, hash, compress, put).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"stage"})).(*prometheus.HistogramVec)
	m.retries = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_retries_total",
		Help: "Work retried, by reason: store (a repository call retried while it is unreachable), error (a queue message " +
			"handed back after an error), retry_after (a message handed back to be tried later).",
	}, []string{"reason"})).(*prometheus.CounterVec)
	m.errs = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_errors_total",
		Help: "Errors, by operation (read, write, stat, put; message: a queue message whose handling failed, retried or given up).",
	}, []string{"op"})).(*prometheus.CounterVec)
	m.inFlight = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_in_flight_chunks", Help: "Chunks being handled right now, by operation (read, write, compress).",
	}, []string{"op"})).(*prometheus.GaugeVec)
	m.jobs = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_jobs_total", Help: "Jobs ended, by kind and final state (interrupted: stopped by a shutdown, to be resumed).",
	}, []string{"kind", "state"})).(*prometheus.CounterVec)
	m.running = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_jobs_running", Help: "Jobs running now, by kind.",
	}, []string{"kind"})).(*prometheus.GaugeVec)
	m.queue = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_queue_messages", Help: "Messages in a work queue: pending (not yet delivered) and ack_pending (delivered, not yet acknowledged).",
	}, []string{"stream", "consumer", "state"})).(*prometheus.GaugeVec)
	m.requests = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulk_requests_total",
		Help: "Client requests (backup, restore, cancel) the coordinator answered, by outcome: accepted, repeated (a job ID " +
			"submitted again with the same parameters), invalid, conflict, not_found, failed (the coordinator's fault).",
	}, []string{"request", "outcome"})).(*prometheus.CounterVec)
	m.workers = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_workers_alive", Help: "Readers and compressors whose heartbeat the coordinator sees, by role.",
	}, []string{"role"})).(*prometheus.GaugeVec)
	m.idle = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_job_idle_seconds",
		Help: "The longest a running job of the kind has gone without progress, in seconds (0 with none running); " +
			"the coordinator fails a job idle for --stall-timeout.",
	}, []string{"kind"})).(*prometheus.GaugeVec)
	m.schedNext = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_schedule_next_window_timestamp_seconds",
		Help: "A schedule's next window not yet fired or skipped (Unix time; in the past: due and not fired). Paused schedules have none.",
	}, []string{"schedule"})).(*prometheus.GaugeVec)
	m.schedFired = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_schedule_last_fired_timestamp_seconds", Help: "The newest window a schedule started a backup for (Unix time; 0: none yet).",
	}, []string{"schedule"})).(*prometheus.GaugeVec)
	m.schedSkip = f(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulk_schedule_last_skipped_timestamp_seconds",
		Help: "The newest window a schedule skipped because a job of its source was still running (Unix time; 0: none).",
	}, []string{"schedule"})).(*prometheus.GaugeVec)
	m.init(role)
	return m
}

// init creates the series of role at zero.
func (m *Metrics) init(role string) {
	reader, compressor, coordinator := role == RoleReader, role == RoleCompressor, role == RoleCoordinator
	if role == RoleFleet {
		reader, compressor, coordinator = true, true, true
	}
	var outcomes, stages, errs, ops []string
	if compressor || reader { // a reader compresses what it has room for
		outcomes, stages, errs, ops = CompressorOutcomes, CompressorStages, CompressorErrors, []string{"compress"}
		for _, r := range RetryReasons {
			m.retries.WithLabelValues(r)
		}
		m.storedByte.WithLabelValues("chunk")
	}
	if reader {
		outcomes = append(slices.Clone(outcomes), ReaderOutcomes...)
		stages = append(slices.Clone(stages), ReaderStages...)
		errs = append(slices.Clone(errs), ReaderErrors...)
		ops = append(slices.Clone(ops), "read", "write")
	}
	for _, o := range outcomes {
		m.chunks.WithLabelValues(o)
		m.rawBytes.WithLabelValues(o)
	}
	for _, s := range stages {
		m.stage.WithLabelValues(s)
	}
	for _, e := range errs {
		m.errs.WithLabelValues(e)
	}
	for _, o := range ops {
		m.inFlight.WithLabelValues(o)
	}
	if coordinator {
		for _, k := range JobKinds {
			m.running.WithLabelValues(k)
			m.idle.WithLabelValues(k)
			for _, s := range JobStates {
				m.jobs.WithLabelValues(k, s)
			}
		}
		for _, r := range RequestKinds {
			for _, o := range RequestOutcomes {
				m.requests.WithLabelValues(r, o)
			}
		}
		for _, r := range WorkerRoles {
			m.workers.WithLabelValues(r)
		}
	}
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

// Retry counts a retry (ConsumeConfig.OnRetry's reasons included). A
// queue message handed back after an error ("error") is also an error of
// op "message", and one given up on ("permanent") is only that: it is not
// tried again.
func (m *Metrics) Retry(reason string) {
	if m == nil {
		return
	}
	switch reason {
	case "permanent":
		m.errs.WithLabelValues("message").Inc()
		return
	case "error":
		m.errs.WithLabelValues("message").Inc()
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

// Request counts a client request (a RequestKinds value) answered with
// outcome (a RequestOutcomes value).
func (m *Metrics) Request(request, outcome string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(request, outcome).Inc()
}

// Workers sets how many live workers of role the coordinator sees.
func (m *Metrics) Workers(role string, n int) {
	if m == nil {
		return
	}
	m.workers.WithLabelValues(role).Set(float64(n))
}

// JobIdle sets the longest time a running job of kind has gone without
// progress.
func (m *Metrics) JobIdle(kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.idle.WithLabelValues(kind).Set(d.Seconds())
}

// ScheduleState is what the schedule metrics show of one schedule.
type ScheduleState struct {
	Name                     string
	Next, LastFired, Skipped time.Time // zero: none
}

// Schedules replaces the schedule series with those of schedules: a
// schedule removed drops out.
func (m *Metrics) Schedules(schedules []ScheduleState) {
	if m == nil {
		return
	}
	m.schedNext.Reset()
	m.schedFired.Reset()
	m.schedSkip.Reset()
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, s := range schedules {
		if !s.Next.IsZero() {
			m.schedNext.WithLabelValues(s.Name).Set(unix(s.Next))
		}
		m.schedFired.WithLabelValues(s.Name).Set(unix(s.LastFired))
		m.schedSkip.WithLabelValues(s.Name).Set(unix(s.Skipped))
	}
}

// Gather returns the current metric families (for tests and tools).
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.reg.Gather() }

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
