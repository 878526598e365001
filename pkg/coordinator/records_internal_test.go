package coordinator

import (
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestScannedBatches: a scan's batches, packed as they come (in any order,
// repeated, from attempts that did not complete), give the completed
// attempt's listing in order; a batch missing, damaged, or a listing that
// does not start at the root fails it.
func TestScannedBatches(t *testing.T) {
	t.Parallel()
	entry := func(p string) manifest.Entry { return manifest.Entry{Path: p, Type: manifest.TypeDir, Mode: 0o755} }
	batch := func(attempt, i int, paths ...string) *queue.ScanBatch {
		var entries []manifest.Entry
		for _, p := range paths {
			entries = append(entries, entry(p))
		}
		return queue.NewScanBatch("j", attempt, i, entries)
	}
	damaged := batch(2, 1, "c")
	damaged.Packed = []byte("not zstd")
	tests := []struct {
		name    string
		adds    []any
		want    string // the paths, or the error
		wantErr bool
	}{
		{"in order", []any{batch(1, 0, ".", "a"), batch(1, 1, "b"), &queue.ScanDone{Attempt: 1, Batches: 2}}, ". a b", false},
		{"out of order, repeated, another attempt's too", []any{batch(2, 1, "b", "c"), batch(1, 0, ".", "x"), batch(2, 0, ".", "a"),
			batch(2, 1, "b", "c"), &queue.ScanDone{Attempt: 2, Batches: 2}}, ". a b c", false},
		{"a batch missing", []any{batch(1, 0, ".", "a"), &queue.ScanDone{Attempt: 1, Batches: 2}}, "batch 1 of 2 missing", true},
		{"a batch damaged", []any{batch(2, 0, "."), damaged, &queue.ScanDone{Attempt: 2, Batches: 2}}, "scan batch 1", true},
		{"not from the root", []any{batch(1, 0, "a"), &queue.ScanDone{Attempt: 1, Batches: 1}}, "root", true},
		{"no completion", []any{batch(1, 0, ".")}, "no completion", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRecords(func(int, int64) {})
			for _, v := range tt.adds {
				r.add(v)
			}
			_, scan, err := r.scanned()
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("scanned = %v, want an error mentioning %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(t, scan); got != tt.want {
				t.Errorf("listing %q, want %q", got, tt.want)
			}
		})
	}
}

// paths returns the paths of scan, space-separated.
func paths(t *testing.T, scan *plan.Scan) string {
	t.Helper()
	var out []string
	if err := scan.Each(func(_ int, e *manifest.Entry) error {
		out = append(out, e.Path)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}
