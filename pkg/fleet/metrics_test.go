package fleet_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// scrape fetches and parses the metrics over HTTP, as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return families
}

// sum adds the values of every series of a counter or gauge family whose
// labels include want.
func sum(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	for _, m := range families[name].GetMetric() {
		labels := make(map[string]string)
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if match {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// TestMetrics scrapes the fleet's metrics over HTTP before and after a
// backup: chunk, byte and stage counters move by what the backup did.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), src, 16<<20, volgen.Options{Seed: 5}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New("fleet")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
	}, repository.OpenOptions{CreatePlaintext: true})
	f, err := fleet.Start(t.Context(), fleet.Config{Dir: t.TempDir(), Repos: repos, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := connect(t, f, repos)

	before := scrape(t, srv.URL)
	if got := sum(before, "bulk_chunks_total", nil); got != 0 {
		t.Fatalf("bulk_chunks_total = %v before any job", got)
	}
	ev := b.backup(t, src, filepath.Join(dir, "repo"), 1<<20)
	if ev.State != queue.StateSucceeded {
		t.Fatalf("backup %s: %s", ev.State, ev.Error)
	}
	after := scrape(t, srv.URL)
	st := ev.Stats
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"bulk_chunks_total", map[string]string{"outcome": "stored"}, float64(st.NewChunks)},
		{"bulk_chunks_total", map[string]string{"outcome": "zero"}, float64(st.ZeroChunks)},
		{"bulk_chunks_total", map[string]string{"outcome": "sent"}, float64(st.Chunks - st.ZeroChunks)},
		{"bulk_stored_bytes_total", map[string]string{"kind": "chunk"}, float64(st.NewBytes)},
		{"bulk_stage_seconds", map[string]string{"stage": "compress"}, float64(st.NewChunks)},
		{"bulk_jobs_total", map[string]string{"kind": "backup", "state": "succeeded"}, 1},
	}
	for _, c := range checks {
		if got := sum(after, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if raw := sum(after, "bulk_raw_bytes_total", nil); raw < float64(st.SourceBytes) {
		t.Errorf("bulk_raw_bytes_total = %v, want at least the %d source bytes", raw, st.SourceBytes)
	}
}
