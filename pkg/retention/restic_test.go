package retention_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/restic")

// resticSnapshots is the snapshot list of restic's TestApplyPolicy
// (internal/data/snapshot_policy_test.go), in restic's order. IDs follow
// that order, so that snapshots with equal times sort as restic's stable
// sort leaves them.
func resticSnapshots() []retention.Snapshot {
	list := []struct {
		time string
		tags []string
	}{
		{"2014-09-01 10:20:30", nil},
		{"2014-09-02 10:20:30", nil},
		{"2014-09-05 10:20:30", nil},
		{"2014-09-06 10:20:30", nil},
		{"2014-09-08 10:20:30", nil},
		{"2014-09-09 10:20:30", nil},
		{"2014-09-10 10:20:30", nil},
		{"2014-09-11 10:20:30", nil},
		{"2014-09-20 10:20:30", nil},
		{"2014-09-22 10:20:30", nil},
		{"2014-08-08 10:20:30", nil},
		{"2014-08-10 10:20:30", nil},
		{"2014-08-12 10:20:30", nil},
		{"2014-08-13 10:20:30", nil},
		{"2014-08-13 10:20:30.1", nil},
		{"2014-08-15 10:20:30", nil},
		{"2014-08-18 10:20:30", nil},
		{"2014-08-20 10:20:30", nil},
		{"2014-08-21 10:20:30", nil},
		{"2014-08-22 10:20:30", nil},
		{"2014-10-01 10:20:30", []string{"foo"}},
		{"2014-10-02 10:20:30", []string{"foo"}},
		{"2014-10-05 10:20:30", []string{"foo"}},
		{"2014-10-06 10:20:30", []string{"foo"}},
		{"2014-10-08 10:20:30", []string{"foo"}},
		{"2014-10-09 10:20:30", []string{"foo"}},
		{"2014-10-10 10:20:30", []string{"foo"}},
		{"2014-10-11 10:20:30", []string{"foo"}},
		{"2014-10-20 10:20:30", []string{"foo"}},
		{"2014-10-22 10:20:30", []string{"foo"}},
		{"2014-11-08 10:20:30", []string{"foo"}},
		{"2014-11-10 10:20:30", []string{"foo"}},
		{"2014-11-12 10:20:30", []string{"foo"}},
		{"2014-11-13 10:20:30", []string{"foo"}},
		{"2014-11-13 10:20:30.1", []string{"bar"}},
		{"2014-11-15 10:20:30", []string{"foo", "bar"}},
		{"2014-11-18 10:20:30", nil},
		{"2014-11-20 10:20:30", nil},
		{"2014-11-21 10:20:30", nil},
		{"2014-11-22 10:20:30", nil},
		{"2015-09-01 10:20:30", nil},
		{"2015-09-02 10:20:30", nil},
		{"2015-09-05 10:20:30", nil},
		{"2015-09-06 10:20:30", nil},
		{"2015-09-08 10:20:30", nil},
		{"2015-09-09 10:20:30", nil},
		{"2015-09-10 10:20:30", nil},
		{"2015-09-11 10:20:30", nil},
		{"2015-09-20 10:20:30", nil},
		{"2015-09-22 10:20:30", nil},
		{"2015-08-08 10:20:30", nil},
		{"2015-08-10 10:20:30", nil},
		{"2015-08-12 10:20:30", nil},
		{"2015-08-13 10:20:30", nil},
		{"2015-08-13 10:20:30.1", nil},
		{"2015-08-15 10:20:30", nil},
		{"2015-08-18 10:20:30", nil},
		{"2015-08-20 10:20:30", nil},
		{"2015-08-21 10:20:30", nil},
		{"2015-08-22 10:20:30", nil},
		{"2015-10-01 10:20:30", nil},
		{"2015-10-02 10:20:30", nil},
		{"2015-10-05 10:20:30", nil},
		{"2015-10-06 10:20:30", nil},
		{"2015-10-08 10:20:30", nil},
		{"2015-10-09 10:20:30", nil},
		{"2015-10-10 10:20:30", nil},
		{"2015-10-11 10:20:30", nil},
		{"2015-10-20 10:20:30", nil},
		{"2015-10-22 10:20:30", nil},
		{"2015-10-22 10:20:30", nil},
		{"2015-10-22 10:20:30", []string{"foo", "bar"}},
		{"2015-10-22 10:20:30", []string{"foo", "bar"}},
		{"2015-10-22 10:20:30", []string{"foo", "bar"}},
		{"2015-11-08 10:20:30", nil},
		{"2015-11-10 10:20:30", nil},
		{"2015-11-12 10:20:30", nil},
		{"2015-11-13 10:20:30", nil},
		{"2015-11-13 10:20:30.1", nil},
		{"2015-11-15 10:20:30", nil},
		{"2015-11-18 10:20:30", nil},
		{"2015-11-20 10:20:30", nil},
		{"2015-11-21 10:20:30", nil},
		{"2015-11-22 10:20:30", nil},
		{"2016-01-01 01:02:03", nil},
		{"2016-01-01 01:03:03", nil},
		{"2016-01-01 07:08:03", nil},
		{"2016-01-03 07:02:03", nil},
		{"2016-01-04 10:23:03", nil},
		{"2016-01-04 11:23:03", nil},
		{"2016-01-04 12:23:03", nil},
		{"2016-01-04 12:24:03", nil},
		{"2016-01-04 12:28:03", nil},
		{"2016-01-04 12:30:03", nil},
		{"2016-01-04 16:23:03", nil},
		{"2016-01-05 09:02:03", nil},
		{"2016-01-06 08:02:03", nil},
		{"2016-01-07 10:02:03", nil},
		{"2016-01-08 20:02:03", nil},
		{"2016-01-09 21:02:03", nil},
		{"2016-01-12 21:02:03", nil},
		{"2016-01-12 21:08:03", nil},
		{"2016-01-18 12:02:03", nil},
	}
	snaps := make([]retention.Snapshot, len(list))
	for i, s := range list {
		t, err := time.Parse(time.DateTime, s.time)
		if err != nil {
			panic(err)
		}
		snaps[i] = retention.Snapshot{ID: fmt.Sprintf("r%03d", i), Time: t, Host: "h", Path: "/p", Tags: s.tags}
	}
	return snaps
}

func mustDuration(s string) retention.Duration {
	d, err := retention.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// resticPolicies are the policies of restic's TestApplyPolicy, in its
// order (its policy 0, the empty policy, is TestApplyErrors' business).
// The golden file of policy i is testdata/restic/policy_<i>.golden, as
// restic's is testdata/policy_keep_snapshots_<i>; each was checked
// against restic's, reasons included.
var resticPolicies = []retention.Policy{
	1:  {Last: 10},
	2:  {Last: 15},
	3:  {Last: 99},
	4:  {Last: 200},
	5:  {Hourly: 20},
	6:  {Daily: 3},
	7:  {Daily: 10},
	8:  {Daily: 30},
	9:  {Last: 5, Daily: 5},
	10: {Last: 2, Daily: 10},
	11: {Weekly: 2},
	12: {Weekly: 4},
	13: {Daily: 3, Weekly: 4},
	14: {Monthly: 6},
	15: {Daily: 2, Weekly: 2, Monthly: 6},
	16: {Yearly: 10},
	17: {Daily: 7, Weekly: 2, Monthly: 3, Yearly: 10},
	18: {KeepTags: []string{"foo"}},
	19: {KeepTags: []string{"foo,bar"}},
	20: {KeepTags: []string{"foo", "bar"}},
	21: {Within: mustDuration("1d")},
	22: {Within: mustDuration("2d")},
	23: {Within: mustDuration("7d")},
	24: {Within: mustDuration("1m")},
	25: {Within: mustDuration("1m14d")},
	26: {Within: mustDuration("1y1d1m")},
	27: {Within: mustDuration("13d23h")},
	28: {Within: mustDuration("2m2h")},
	29: {Within: mustDuration("1y2m3d3h")},
	30: {WithinHourly: mustDuration("1y2m3d3h")},
	31: {WithinDaily: mustDuration("1y2m3d3h")},
	32: {WithinWeekly: mustDuration("1y2m3d3h")},
	33: {WithinMonthly: mustDuration("1y2m3d3h")},
	34: {WithinYearly: mustDuration("1y2m3d3h")},
	35: {
		Within:        mustDuration("1h"),
		WithinHourly:  mustDuration("1d"),
		WithinDaily:   mustDuration("7d"),
		WithinWeekly:  mustDuration("1m"),
		WithinMonthly: mustDuration("1y"),
		WithinYearly:  mustDuration("9999y"),
	},
	36: {Last: retention.Unlimited},
	37: {Last: retention.Unlimited, Hourly: retention.Unlimited},
	38: {Hourly: retention.Unlimited},
	39: {Daily: 3, Weekly: 2, Monthly: retention.Unlimited, Yearly: retention.Unlimited},
}

// render writes one line per kept snapshot: ID, time, tags and reasons.
func render(keep []retention.Kept) string {
	var b strings.Builder
	for _, k := range keep {
		fmt.Fprintf(&b, "%s %s", k.ID, k.Time.Format(time.RFC3339Nano))
		if len(k.Tags) > 0 {
			fmt.Fprintf(&b, " %v", k.Tags)
		}
		fmt.Fprintf(&b, ": %s\n", strings.Join(k.Reasons, "; "))
	}
	return b.String()
}

// TestApplyResticCases runs restic's own policy test cases: the same
// snapshots and policies must keep the same snapshots for the same reasons.
func TestApplyResticCases(t *testing.T) {
	snaps := resticSnapshots()
	now := time.Date(2016, 2, 1, 0, 0, 0, 0, time.UTC)
	for i, p := range resticPolicies {
		if p.Empty() {
			continue
		}
		t.Run(fmt.Sprintf("%d %s", i, p), func(t *testing.T) {
			groups, err := retention.Apply(snaps, p, retention.GroupBy{}, now)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if len(groups) != 1 {
				t.Fatalf("got %d groups, want 1", len(groups))
			}
			g := groups[0]
			if n := len(g.Keep) + len(g.Remove); n != len(snaps) {
				t.Errorf("keep %d + remove %d = %d snapshots, want %d", len(g.Keep), len(g.Remove), n, len(snaps))
			}
			got := render(g.Keep)
			golden := filepath.Join("testdata", "restic", fmt.Sprintf("policy_%d.golden", i))
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("kept:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
