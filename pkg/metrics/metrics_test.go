package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
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
		{"/metrics", true, 200, `bulk_chunks_total{outcome="stored",role="compressor"} 1`},
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
}
