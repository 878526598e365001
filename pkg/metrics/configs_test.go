package metrics_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
)

// The Grafana dashboard and the Prometheus alert rules under configs/ must
// use only metrics the services expose, with the labels they have: a
// renamed metric or label would otherwise leave a panel empty and an alert
// silent, which nobody notices until it should have fired.

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

// exposed returns every metric family a process of any role can expose,
// with the label names of its series.
func exposed(t *testing.T) map[string][]string {
	t.Helper()
	m := metrics.New(metrics.RoleFleet)
	// The series that exist only once there is something to show.
	m.Queue("BULK_READY", "compressors", 0, 0)
	m.Schedules([]metrics.ScheduleState{{Name: "nightly", Next: time.Now(), LastFired: time.Now(), Skipped: time.Now()}})
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{"up": nil} // Prometheus's own, per target
	for _, f := range families {
		var labels []string
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		name := f.GetName()
		if f.GetType().String() == "HISTOGRAM" {
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"] = labels
			out[name+"_count"] = labels
			continue
		}
		out[name] = labels
	}
	return out
}

var (
	stringRE    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	selectorRE  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}`)
	matcherRE   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	rangeRE     = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRE  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	identRE     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promQLWords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// used is what one PromQL expression uses: metric names with the labels it
// matches on them, and the labels it groups by.
type used struct {
	metrics  map[string][]string
	grouping []string
}

// parsePromQL finds the metrics and labels of expr. It is no PromQL
// parser, but enough for the expressions of a dashboard and alert rules:
// selectors, ranges, aggregations with by/without, binary operators and
// function calls.
func parsePromQL(expr string) used {
	u := used{metrics: map[string][]string{}}
	expr = stringRE.ReplaceAllString(expr, `""`)
	expr = selectorRE.ReplaceAllStringFunc(expr, func(sel string) string {
		m := selectorRE.FindStringSubmatch(sel)
		var labels []string
		for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			labels = append(labels, lm[1])
		}
		if m[1] != "" {
			u.metrics[m[1]] = append(u.metrics[m[1]], labels...)
		}
		return " "
	})
	expr = rangeRE.ReplaceAllString(expr, " ")
	expr = groupingRE.ReplaceAllStringFunc(expr, func(g string) string {
		for _, l := range strings.Split(groupingRE.FindStringSubmatch(g)[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				u.grouping = append(u.grouping, l)
			}
		}
		return " "
	})
	for _, loc := range identRE.FindAllStringIndex(expr, -1) {
		word := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9' || expr[loc[0]-1] == '.') {
			continue // a number's exponent or unit: 1e3, 0.95
		}
		if slices.Contains(promQLWords, strings.ToLower(word)) {
			continue
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if _, ok := u.metrics[word]; !ok {
			u.metrics[word] = nil
		}
	}
	return u
}

func TestParsePromQL(t *testing.T) {
	u := parsePromQL(`histogram_quantile(0.95, sum by (le, stage) (rate(bulk_stage_seconds_bucket{job=~"a|b"}[$__rate_interval]))) > 1e3 and on(instance) up == 1`)
	if len(u.metrics) != 2 || !slices.Equal(u.metrics["bulk_stage_seconds_bucket"], []string{"job"}) || u.metrics["up"] != nil ||
		!slices.Equal(u.grouping, []string{"le", "stage", "instance"}) {
		t.Errorf("parsePromQL = %+v", u)
	}
}

// checkExpr reports, in where, every metric of expr the services do not
// expose and every label they do not have.
func checkExpr(t *testing.T, where, expr string, families map[string][]string) {
	t.Helper()
	u := parsePromQL(expr)
	if len(u.metrics) == 0 {
		t.Errorf("%s: %q uses no metric", where, expr)
	}
	all := slices.Clone(targetLabels)
	for name, labels := range u.metrics {
		have, ok := families[name]
		if !ok {
			t.Errorf("%s: metric %s does not exist (in %q)", where, name, expr)
			continue
		}
		all = append(all, have...)
		for _, l := range labels {
			if !slices.Contains(have, l) && !slices.Contains(targetLabels, l) {
				t.Errorf("%s: metric %s has no label %s (in %q)", where, name, l, expr)
			}
		}
	}
	for _, l := range u.grouping {
		if !slices.Contains(all, l) {
			t.Errorf("%s: grouping by %s, a label none of its metrics has (in %q)", where, l, expr)
		}
	}
}

func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "configs", "prometheus-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("configs/prometheus-alerts.yml: %v", err)
	}
	families := exposed(t)
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkExpr(t, "alert "+r.Alert, r.Expr, families)
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s: want a severity, a summary and a description", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
		}
	}
	// What issue 18 asks to be alerted on.
	for _, want := range []string{"BulkJobFailed", "BulkJobStalled", "BulkNoCompressorAlive", "BulkScheduleMissedWindow"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s among %v", want, alerts)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "configs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	}
	var dash struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
		Inputs []struct {
			Name string `json:"name"`
		} `json:"__inputs"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("configs/grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Inputs) != 1 || dash.Inputs[0].Name != "DS_PROMETHEUS" {
		t.Errorf("dashboard %q (uid %q, inputs %+v): want a title, a uid and the DS_PROMETHEUS input", dash.Title, dash.UID, dash.Inputs)
	}
	families := exposed(t)
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %q, want ${DS_PROMETHEUS}", p.Title, tg.Datasource.UID)
			}
			checkExpr(t, "panel "+p.Title, tg.Expr, families)
			for name := range parsePromQL(tg.Expr).metrics {
				used[strings.TrimSuffix(name, "_bucket")] = true
			}
		}
	}
	// Every bulk_* metric is on the dashboard.
	for name := range families {
		if strings.HasPrefix(name, "bulk_") && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") {
			if !used[strings.TrimSuffix(name, "_bucket")] {
				t.Errorf("the dashboard does not show %s", name)
			}
		}
	}
}
