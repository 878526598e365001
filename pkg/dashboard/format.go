package dashboard

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// formatBytes writes n in binary units: "512 B", "1.5 KiB", "64.0 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatRate writes a throughput in MB/s (10^6 bytes, as the rest of
// bulkbackup reports it), or "" when there is none.
func formatRate(mbps float64) string {
	if mbps <= 0 || math.IsNaN(mbps) || math.IsInf(mbps, 0) {
		return ""
	}
	return fmt.Sprintf("%.1f MB/s", mbps)
}

// formatSeconds writes a duration given in seconds, rounded to what a
// person reads: "850ms", "42s", "3m5s".
func formatSeconds(s float64) string {
	if s <= 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return ""
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// formatTime writes t in UTC, or "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// redactor removes known secret values from what the dashboard sends, as a
// last line of defence: nothing the dashboard renders should hold one, but
// an error message from a store or a server could quote one.
type redactor struct {
	r *strings.Replacer
}

// minSecret is the shortest value redacted: shorter ones would blank out
// ordinary words and are no secrets worth the name.
const minSecret = 6

// newRedactor returns a redactor of secrets (empty and short ones are
// ignored). Each secret is matched as written, HTML-escaped and
// JSON-escaped, the forms in which a page or an event could carry it.
func newRedactor(secrets []string) *redactor {
	var pairs []string
	seen := make(map[string]bool)
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			pairs = append(pairs, s, "[redacted]")
		}
	}
	for _, s := range secrets {
		if len(s) < minSecret {
			continue
		}
		add(s)
		add(html.EscapeString(s))
		if js, err := json.Marshal(s); err == nil {
			add(strings.Trim(string(js), `"`))
		}
	}
	if len(pairs) == 0 {
		return &redactor{}
	}
	return &redactor{r: strings.NewReplacer(pairs...)}
}

// bytes returns b with every secret replaced.
func (r *redactor) bytes(b []byte) []byte {
	if r.r == nil {
		return b
	}
	return []byte(r.r.Replace(string(b)))
}
