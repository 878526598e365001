package dashboard

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"zero bytes", formatBytes(0), "0 B"},
		{"bytes", formatBytes(1023), "1023 B"},
		{"KiB", formatBytes(1536), "1.5 KiB"},
		{"MiB", formatBytes(64 << 20), "64.0 MiB"},
		{"TiB", formatBytes(3 << 40), "3.0 TiB"},
		{"rate", formatRate(412.345), "412.3 MB/s"},
		{"no rate", formatRate(0), ""},
		{"NaN rate", formatRate(math.NaN()), ""},
		{"sub-second", formatSeconds(0.8504), "850ms"},
		{"seconds", formatSeconds(42.04), "42s"},
		{"minutes", formatSeconds(185.4), "3m5s"},
		{"no duration", formatSeconds(0), ""},
		{"time", formatTime(time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))), "2026-03-04 04:06:07Z"},
		{"zero time", formatTime(time.Time{}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	r := newRedactor([]string{"", "short", `s3cr<et>&"key`})
	tests := []struct {
		name, in, want string
	}{
		{"raw", `err: s3cr<et>&"key!`, "err: [redacted]!"},
		{"html escaped", `err: s3cr&lt;et&gt;&amp;&#34;key`, "err: [redacted]"},
		{"json escaped", `{"e":"s3cr\u003cet\u003e\u0026\"key"}`, `{"e":"[redacted]"}`},
		{"short secrets are kept", "a short word", "a short word"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(r.bytes([]byte(tt.in))); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLocalPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/jobs/abc?x=1", "/jobs/abc?x=1"},
		{"//evil.example/x", "/"},
		{`/\evil.example`, "/"},
		{"https://evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"jobs", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := localPath(tt.in); got != tt.want {
				t.Errorf("localPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNiceCeil(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{-1, 1}, {0, 1}, {0.3, 0.5}, {1, 1}, {1.1, 2}, {3, 5}, {7, 10}, {412, 500}, {1e9 + 1, 2e9},
	}
	for _, tt := range tests {
		if got := niceCeil(tt.in); math.Abs(got-tt.want) > 1e-9*tt.want {
			t.Errorf("niceCeil(%g) = %g, want %g", tt.in, got, tt.want)
		}
	}
}

func TestByteUnit(t *testing.T) {
	tests := []struct {
		max      int64
		wantUnit float64
		wantName string
	}{
		{0, 1, "B"}, {1023, 1, "B"}, {1024, 1024, "KiB"}, {48 << 20, 1 << 20, "MiB"}, {5 << 40, 1 << 40, "TiB"}, {1 << 62, 1 << 50, "PiB"},
	}
	for _, tt := range tests {
		if unit, name := byteUnit(tt.max); unit != tt.wantUnit || name != tt.wantName {
			t.Errorf("byteUnit(%d) = %g %s, want %g %s", tt.max, unit, name, tt.wantUnit, tt.wantName)
		}
	}
}

func TestChart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	fmtV := func(v float64) string { return formatSeconds(v) }
	tests := []struct {
		name      string
		points    []point
		wantEmpty bool
		wantXs    []float64 // dot x positions
		wantYs    []float64 // dot y positions
		wantTicks int       // time axis labels
	}{
		{name: "nothing", wantEmpty: true},
		{name: "only NaN", points: []point{{T: t0, V: math.NaN()}}, wantEmpty: true},
		{
			name: "one run stands in the middle", points: []point{{T: t0, V: 10}},
			wantXs: []float64{(chartLeft + chartWidth - chartRight) / 2.0}, wantYs: []float64{chartTop}, wantTicks: 1,
		},
		{
			name:   "two runs span the plot",
			points: []point{{T: t0, V: 5}, {T: t0.Add(time.Hour), V: 10}},
			wantXs: []float64{chartLeft, chartWidth - chartRight},
			// 10 is the top; 5 is half way down.
			wantYs:    []float64{(chartTop + chartHeight - chartBottom) / 2.0, chartTop},
			wantTicks: 2,
		},
		{
			name:   "NaN and negative values",
			points: []point{{T: t0, V: -3}, {T: t0.Add(time.Minute), V: math.Inf(1)}, {T: t0.Add(2 * time.Minute), V: 1}},
			wantXs: []float64{chartLeft, chartWidth - chartRight}, wantYs: []float64{chartHeight - chartBottom, chartTop},
			wantTicks: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChart("Duration", fmtV, series{Name: "d", Points: tt.points})
			if c.Empty != tt.wantEmpty {
				t.Fatalf("Empty = %v, want %v", c.Empty, tt.wantEmpty)
			}
			if tt.wantEmpty {
				return
			}
			dots := c.Lines[0].Dots
			if len(dots) != len(tt.wantXs) {
				t.Fatalf("%d dots, want %d", len(dots), len(tt.wantXs))
			}
			for i, d := range dots {
				if d.X != tt.wantXs[i] || d.Y != tt.wantYs[i] {
					t.Errorf("dot %d at (%g,%g), want (%g,%g)", i, d.X, d.Y, tt.wantXs[i], tt.wantYs[i])
				}
				if d.X < c.X0 || d.X > c.X1 || d.Y < c.Y1 || d.Y > c.Y0 {
					t.Errorf("dot %d at (%g,%g) outside the plot", i, d.X, d.Y)
				}
			}
			if got := strings.Count(c.Lines[0].Points, ","); got != len(dots) {
				t.Errorf("polyline %q has %d points, want %d", c.Lines[0].Points, got, len(dots))
			}
			if len(c.XTicks) != tt.wantTicks {
				t.Errorf("%d time labels, want %d", len(c.XTicks), tt.wantTicks)
			}
			if len(c.YTicks) != chartTickNum+1 || c.YTicks[0].Pos != c.Y0 || c.YTicks[chartTickNum].Pos != c.Y1 {
				t.Errorf("value ticks %+v", c.YTicks)
			}
		})
	}
}

// TestMailbox checks the coalescing of live updates: the newest update of
// each job wins, jobs keep the order they first changed in, and a snapshot
// does not replace a newer event.
func TestMailbox(t *testing.T) {
	m := &mailbox{wake: make(chan struct{}, 1), jobs: make(map[string]jobView)}
	m.put(jobView{ID: "a", State: "running", Done: 1}, false)
	m.put(jobView{ID: "b", State: "running"}, false)
	m.put(jobView{ID: "a", State: "running", Done: 2}, false)
	m.put(jobView{ID: "a", State: "succeeded", Done: 3, Final: true}, false)
	m.put(jobView{ID: "a", State: "running", Done: 1}, true) // an older snapshot
	m.putWorkers([]workerView{{ID: "w"}})
	select {
	case <-m.wake:
	default:
		t.Fatal("no wake-up")
	}
	jobs, workers := m.take()
	if len(jobs) != 2 || jobs[0].ID != "a" || jobs[1].ID != "b" {
		t.Fatalf("jobs %+v, want a then b", jobs)
	}
	if jobs[0].State != "succeeded" || jobs[0].Done != 3 {
		t.Errorf("job a %+v, want its final update", jobs[0])
	}
	if len(workers) != 1 {
		t.Errorf("workers %+v", workers)
	}
	if jobs, workers := m.take(); len(jobs) != 0 || workers != nil {
		t.Errorf("second take: %+v %+v, want nothing", jobs, workers)
	}

	one := &mailbox{job: "b", wake: make(chan struct{}, 1), jobs: make(map[string]jobView)}
	one.put(jobView{ID: "a"}, false)
	one.putWorkers([]workerView{{ID: "w"}})
	one.put(jobView{ID: "b"}, false)
	if jobs, workers := one.take(); len(jobs) != 1 || jobs[0].ID != "b" || workers != nil {
		t.Errorf("a stream of job b got %+v %+v", jobs, workers)
	}
}
