package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/version"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond) // the server is starting
	}
}

func TestServe(t *testing.T) {
	addr := testenv.FreeAddr(t)
	m := metrics.New("compressor")
	m.Chunk("stored", 4096)
	var notReady atomic.Bool
	notReady.Store(true)
	ready := func() error {
		if notReady.Load() {
			return errors.New("NATS reconnecting")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- metrics.Serve(ctx, addr, m, ready, nil) }()

	tests := []struct {
		path     string
		ready    bool
		wantCode int
		wantBody string
	}{
		{"/healthz", false, 200, "ok"},
		{"/readyz", false, 503, "NATS reconnecting"},
		{"/readyz", true, 200, "ready"},
		{"/metrics", true, 200, `bulk_chunks_total{outcome="stored"} 1`},
		{"/metrics", true, 200, `bulk_build_info{goversion="` + runtime.Version() + `",role="compressor",version="` + version.Version + `"} 1`},
	}
	for _, tt := range tests {
		notReady.Store(!tt.ready)
		code, body := get(t, "http://"+addr+tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
}

func TestServeBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = metrics.Serve(t.Context(), ln.Addr().String(), metrics.New("reader"), func() error { return nil }, nil)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Serve on a busy address = %v, want an error naming it", err)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Chunk("stored", 1)
	m.Stored("chunk", 1)
	m.Stage("put", time.Now())
	m.Retry("x")
	m.Error("x")
	m.Begin("x")()
	m.JobStarted("backup")
	m.JobEnded("backup", "succeeded")
	m.Queue("s", "c", 1, 1)
	m.Request("backup", "invalid")
	m.Workers("compressor", 1)
	m.JobIdle("backup", time.Second)
	m.Schedules([]metrics.ScheduleState{{Name: "x"}})
}

// series returns the bulk_* series m exposes, as "name{label=value,...}"
// (labels sorted), histograms by their name.
func series(t *testing.T, m *metrics.Metrics) map[string]bool {
	t.Helper()
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "bulk_") {
			continue
		}
		for _, mm := range f.GetMetric() {
			var labels []string
			for _, l := range mm.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(labels)
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = true
		}
	}
	return got
}

// TestInitialSeries checks that a fresh process of each role exposes the
// series of what it does, at zero, before it does anything, and that the
// role is a label of bulk_build_info only.
func TestInitialSeries(t *testing.T) {
	tests := []struct {
		role       string
		want, dont []string
	}{
		{metrics.RoleCompressor,
			[]string{"bulk_chunks_total{outcome=stored}", "bulk_chunks_total{outcome=deduplicated}", "bulk_raw_bytes_total{outcome=stored}",
				"bulk_stored_bytes_total{kind=chunk}", "bulk_stage_seconds{stage=compress}", "bulk_stage_seconds{stage=fetch}",
				"bulk_errors_total{op=put}", "bulk_errors_total{op=message}", "bulk_retries_total{reason=store}",
				"bulk_in_flight_chunks{op=compress}"},
			[]string{"bulk_chunks_total{outcome=written}", "bulk_jobs_total{kind=backup,state=failed}", "bulk_workers_alive{role=compressor}"}},
		{metrics.RoleReader,
			[]string{"bulk_chunks_total{outcome=sent}", "bulk_chunks_total{outcome=zero}", "bulk_chunks_total{outcome=written}",
				"bulk_chunks_total{outcome=stored}", "bulk_stage_seconds{stage=read}", "bulk_errors_total{op=read}",
				"bulk_in_flight_chunks{op=read}", "bulk_in_flight_chunks{op=write}"},
			[]string{"bulk_jobs_running{kind=backup}"}},
		{metrics.RoleCoordinator,
			[]string{"bulk_jobs_total{kind=backup,state=failed}", "bulk_jobs_total{kind=restore,state=succeeded}",
				"bulk_jobs_running{kind=backup}", "bulk_requests_total{outcome=invalid,request=backup}",
				"bulk_requests_total{outcome=not_found,request=cancel}", "bulk_workers_alive{role=compressor}",
				"bulk_job_idle_seconds{kind=restore}"},
			[]string{"bulk_chunks_total{outcome=stored}"}},
		{metrics.RoleFleet,
			[]string{"bulk_chunks_total{outcome=stored}", "bulk_chunks_total{outcome=sent}", "bulk_jobs_total{kind=backup,state=succeeded}"},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			got := series(t, metrics.New(tt.role))
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("a fresh %s does not expose %s", tt.role, w)
				}
			}
			for _, d := range tt.dont {
				if got[d] {
					t.Errorf("a %s exposes %s, which it never records", tt.role, d)
				}
			}
			info := "bulk_build_info{goversion=" + runtime.Version() + ",role=" + tt.role + ",version=" + version.Version + "}"
			for s := range got {
				if strings.Contains(s, "role=") && s != info && !strings.HasPrefix(s, "bulk_workers_alive{") {
					t.Errorf("%s carries a role label; only bulk_build_info should", s)
				}
			}
			if !got[info] {
				t.Errorf("no %s", info)
			}
		})
	}
}

// TestRetryCountsErrors checks that a queue message handed back after an
// error, or given up on, counts as an error, and a give-up not as a retry.
func TestRetryCountsErrors(t *testing.T) {
	m := metrics.New(metrics.RoleCompressor)
	m.Retry("error")
	m.Retry("permanent")
	m.Retry("retry_after")
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				values[f.GetName()+"/"+l.GetValue()] = mm.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"bulk_errors_total/message": 2, "bulk_retries_total/error": 1, "bulk_retries_total/retry_after": 1,
		"bulk_retries_total/permanent": 0,
	}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("%s = %v, want %v", k, values[k], v)
		}
	}
}

// TestKindsCoverJobs: every kind of job the coordinator runs has its
// series from the start (bulk_jobs_total, bulk_requests_total,
// bulk_job_idle_seconds), so a stalled prune or check shows.
func TestKindsCoverJobs(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{queue.KindBackup, queue.KindRestore, queue.KindPrune, queue.KindCheck} {
		if !slices.Contains(metrics.JobKinds, kind) || !slices.Contains(metrics.RequestKinds, kind) {
			t.Errorf("job kind %q is missing from JobKinds %v or RequestKinds %v", kind, metrics.JobKinds, metrics.RequestKinds)
		}
	}
}
