package retention_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

// snap returns a snapshot of host h, path /p, at "2006-01-02 15:04" UTC.
func snap(id, at string, tags ...string) retention.Snapshot {
	t, err := time.Parse("2006-01-02 15:04", at)
	if err != nil {
		panic(err)
	}
	return retention.Snapshot{ID: id, Time: t, Host: "h", Path: "/p", Tags: tags}
}

func at(s string) time.Time { return snap("", s).Time }

// kept renders a group's Keep as "ID: reason; reason" lines.
func kept(keep []retention.Kept) []string {
	var out []string
	for _, k := range keep {
		out = append(out, k.ID+": "+strings.Join(k.Reasons, "; "))
	}
	return out
}

func ids(snaps []retention.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}

func TestApply(t *testing.T) {
	t.Parallel()
	now := at("2024-06-01 00:00")
	tests := []struct {
		name       string
		snaps      []retention.Snapshot
		policy     retention.Policy
		now        time.Time // default: now
		wantKeep   []string
		wantRemove []string
	}{
		{
			name:       "last keeps the newest n",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 10:00"), snap("b", "2024-03-01 11:00"), snap("c", "2024-03-02 10:00"), snap("d", "2024-03-03 10:00")},
			policy:     retention.Policy{Last: 2},
			wantKeep:   []string{"d: last snapshot", "c: last snapshot"},
			wantRemove: []string{"b", "a"},
		},
		{
			name:       "hourly keeps the newest of each clock hour",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 10:05"), snap("b", "2024-03-01 10:50"), snap("c", "2024-03-01 11:10"), snap("d", "2024-03-01 12:30")},
			policy:     retention.Policy{Hourly: 2},
			wantKeep:   []string{"d: hourly snapshot", "c: hourly snapshot"},
			wantRemove: []string{"b", "a"},
		},
		{
			name:       "daily counts days that have a snapshot, however far apart",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 10:00"), snap("b", "2024-03-05 09:00"), snap("c", "2024-03-05 22:00"), snap("d", "2024-03-20 10:00")},
			policy:     retention.Policy{Daily: 2},
			wantKeep:   []string{"d: daily snapshot", "c: daily snapshot"},
			wantRemove: []string{"b", "a"},
		},
		{
			// 2024-03-10 is a Sunday: it closes ISO week 10, which
			// began on Monday 4 March; Monday 11 March opens week 11.
			name:       "weekly buckets are ISO weeks from Monday",
			snaps:      []retention.Snapshot{snap("mon4", "2024-03-04 10:00"), snap("sat9", "2024-03-09 10:00"), snap("sun10", "2024-03-10 10:00"), snap("mon11", "2024-03-11 10:00")},
			policy:     retention.Policy{Weekly: 2},
			wantKeep:   []string{"mon11: weekly snapshot", "sun10: weekly snapshot"},
			wantRemove: []string{"sat9", "mon4"},
		},
		{
			name:       "monthly keeps the newest of each month",
			snaps:      []retention.Snapshot{snap("jan", "2024-01-15 10:00"), snap("feb", "2024-02-29 10:00"), snap("mar1", "2024-03-01 10:00"), snap("mar31", "2024-03-31 10:00")},
			policy:     retention.Policy{Monthly: 2},
			wantKeep:   []string{"mar31: monthly snapshot", "feb: monthly snapshot"},
			wantRemove: []string{"mar1", "jan"},
		},
		{
			name:       "yearly keeps the newest of each year",
			snaps:      []retention.Snapshot{snap("a", "2022-06-01 10:00"), snap("b", "2023-12-31 23:59"), snap("c", "2024-01-01 00:00")},
			policy:     retention.Policy{Yearly: 1},
			wantKeep:   []string{"c: yearly snapshot"},
			wantRemove: []string{"b", "a"},
		},
		{
			// restic issue 4806: the oldest snapshot shares a day with a
			// kept one, but Daily has buckets left, so it stays.
			name:       "unfilled rule keeps the oldest snapshot too",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 08:00"), snap("b", "2024-03-01 20:00"), snap("c", "2024-03-02 18:00")},
			policy:     retention.Policy{Daily: 5},
			wantKeep:   []string{"c: daily snapshot", "b: daily snapshot", "a: oldest daily snapshot"},
			wantRemove: nil,
		},
		{
			name:       "filled rule lets the oldest go",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 08:00"), snap("b", "2024-03-01 20:00"), snap("c", "2024-03-02 18:00")},
			policy:     retention.Policy{Daily: 2},
			wantKeep:   []string{"c: daily snapshot", "b: daily snapshot"},
			wantRemove: []string{"a"},
		},
		{
			name:       "unlimited keeps the newest of every bucket",
			snaps:      []retention.Snapshot{snap("a", "2023-03-01 10:00"), snap("b", "2024-03-02 10:00"), snap("c", "2024-03-03 09:00"), snap("d", "2024-03-03 10:00")},
			policy:     retention.Policy{Daily: retention.Unlimited},
			wantKeep:   []string{"d: daily snapshot", "b: daily snapshot", "a: daily snapshot"},
			wantRemove: []string{"c"},
		},
		{
			name: "rules combine by or, each reason listed",
			snaps: []retention.Snapshot{
				snap("a", "2024-02-20 10:00"), snap("b", "2024-03-08 10:00"), snap("c", "2024-03-09 10:00"),
				snap("d", "2024-03-10 09:00"), snap("e", "2024-03-10 10:00"),
			},
			policy:     retention.Policy{Last: 1, Daily: 2, Weekly: 2, Monthly: 2},
			wantKeep:   []string{"e: last snapshot; daily snapshot; weekly snapshot; monthly snapshot", "c: daily snapshot", "a: weekly snapshot; monthly snapshot"},
			wantRemove: []string{"d", "b"},
		},
		{
			// From now (June) every snapshot is months old: all would go.
			name:       "within measures back from the newest snapshot, not from now",
			snaps:      []retention.Snapshot{snap("a", "2024-03-08 11:00"), snap("b", "2024-03-09 13:00"), snap("c", "2024-03-10 12:00")},
			policy:     retention.Policy{Within: retention.Duration{Days: 2}},
			wantKeep:   []string{"c: within 2d", "b: within 2d"},
			wantRemove: []string{"a"},
		},
		{
			name:       "within leaves out a snapshot exactly at the cutoff",
			snaps:      []retention.Snapshot{snap("a", "2024-03-09 12:00"), snap("b", "2024-03-09 12:01"), snap("c", "2024-03-10 12:00")},
			policy:     retention.Policy{Within: retention.Duration{Days: 1}},
			wantKeep:   []string{"c: within 1d", "b: within 1d"},
			wantRemove: []string{"a"},
		},
		{
			// 1m before 31 March is 31 February, which AddDate reads
			// as 2 March in a leap year.
			name:       "within takes months back by calendar",
			snaps:      []retention.Snapshot{snap("feb", "2024-02-29 12:00"), snap("a", "2024-03-02 11:00"), snap("b", "2024-03-02 13:00"), snap("c", "2024-03-31 12:00")},
			policy:     retention.Policy{Within: retention.Duration{Months: 1}},
			wantKeep:   []string{"c: within 1m", "b: within 1m"},
			wantRemove: []string{"a", "feb"},
		},
		{
			name:       "within hours",
			snaps:      []retention.Snapshot{snap("a", "2024-03-08 23:00"), snap("b", "2024-03-09 01:00"), snap("c", "2024-03-10 12:00")},
			policy:     retention.Policy{Within: retention.Duration{Days: 1, Hours: 12}},
			wantKeep:   []string{"c: within 1d12h", "b: within 1d12h"},
			wantRemove: []string{"a"},
		},
		{
			// Measured from the future snapshot, only it would stay.
			name:       "a snapshot in the future does not move the within window",
			snaps:      []retention.Snapshot{snap("a", "2024-03-08 10:00"), snap("b", "2024-03-09 13:00"), snap("c", "2024-03-10 12:00"), snap("future", "2024-03-20 12:00")},
			policy:     retention.Policy{Within: retention.Duration{Days: 2}},
			now:        at("2024-03-10 13:00"),
			wantKeep:   []string{"future: within 2d", "c: within 2d", "b: within 2d"},
			wantRemove: []string{"a"},
		},
		{
			name:       "a snapshot taken at now is not in the future",
			snaps:      []retention.Snapshot{snap("a", "2024-03-09 11:00"), snap("b", "2024-03-10 12:00")},
			policy:     retention.Policy{Within: retention.Duration{Days: 1}},
			now:        at("2024-03-10 12:00"),
			wantKeep:   []string{"b: within 1d"},
			wantRemove: []string{"a"},
		},
		{
			name: "daily within keeps the newest of each day in the period",
			snaps: []retention.Snapshot{
				snap("a", "2024-03-07 10:00"), snap("b", "2024-03-08 13:00"), snap("c", "2024-03-09 10:00"),
				snap("d", "2024-03-09 20:00"), snap("e", "2024-03-10 08:00"), snap("f", "2024-03-10 12:00"),
			},
			policy:     retention.Policy{WithinDaily: retention.Duration{Days: 2}},
			wantKeep:   []string{"f: daily within 2d", "d: daily within 2d", "b: daily within 2d"},
			wantRemove: []string{"e", "c", "a"},
		},
		{
			name: "hourly, weekly, monthly and yearly within",
			snaps: []retention.Snapshot{
				snap("y22", "2022-05-01 10:00"), snap("y23", "2023-05-01 10:00"), snap("m1", "2024-01-10 10:00"),
				snap("w9", "2024-02-28 10:00"), snap("h9", "2024-03-10 09:30"), snap("h10", "2024-03-10 10:30"),
			},
			policy: retention.Policy{
				WithinHourly:  retention.Duration{Hours: 2},
				WithinWeekly:  retention.Duration{Days: 14},
				WithinMonthly: retention.Duration{Months: 3},
				WithinYearly:  retention.Duration{Years: 1},
			},
			wantKeep: []string{
				"h10: hourly within 2h; weekly within 14d; monthly within 3m; yearly within 1y",
				"h9: hourly within 2h",
				"w9: weekly within 14d; monthly within 3m",
				"m1: monthly within 3m",
				"y23: yearly within 1y",
			},
			wantRemove: []string{"y22"},
		},
		{
			name: "keep tags: any entry matches, commas need all",
			snaps: []retention.Snapshot{
				snap("a", "2024-03-01 10:00", "keep"), snap("b", "2024-03-02 10:00", "prod"),
				snap("c", "2024-03-03 10:00", "prod", "db"), snap("d", "2024-03-04 10:00", "db", "x", "prod"),
				snap("e", "2024-03-05 10:00"),
			},
			policy:     retention.Policy{KeepTags: []string{"keep", "prod,db"}},
			wantKeep:   []string{"d: has tags [prod, db]", "c: has tags [prod, db]", "a: has tags [keep]"},
			wantRemove: []string{"e", "b"},
		},
		{
			name:       "empty tag entry keeps untagged snapshots",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 10:00"), snap("b", "2024-03-02 10:00", "x"), snap("c", "2024-03-03 10:00")},
			policy:     retention.Policy{KeepTags: []string{""}},
			wantKeep:   []string{"c: has no tags", "a: has no tags"},
			wantRemove: []string{"b"},
		},
		{
			name:       "tags and rules combine",
			snaps:      []retention.Snapshot{snap("a", "2024-03-01 10:00", "keep"), snap("b", "2024-03-02 10:00"), snap("c", "2024-03-03 10:00", "keep")},
			policy:     retention.Policy{Last: 1, KeepTags: []string{"keep"}},
			wantKeep:   []string{"c: has tags [keep]; last snapshot", "a: has tags [keep]"},
			wantRemove: []string{"b"},
		},
		{
			name:       "identical times: ID breaks the tie",
			snaps:      []retention.Snapshot{snap("b", "2024-03-01 10:00"), snap("c", "2024-03-01 10:00"), snap("a", "2024-03-01 10:00")},
			policy:     retention.Policy{Last: 1},
			wantKeep:   []string{"a: last snapshot"},
			wantRemove: []string{"b", "c"},
		},
		{
			name:       "identical times: daily keeps the first by ID, oldest rule the last",
			snaps:      []retention.Snapshot{snap("b", "2024-03-01 10:00"), snap("c", "2024-03-01 10:00"), snap("a", "2024-03-01 10:00")},
			policy:     retention.Policy{Daily: 2},
			wantKeep:   []string{"a: daily snapshot", "c: oldest daily snapshot"},
			wantRemove: []string{"b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := tt.now
			if n.IsZero() {
				n = now
			}
			groups, err := retention.Apply(tt.snaps, tt.policy, retention.DefaultGroupBy, n)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if len(groups) != 1 {
				t.Fatalf("got %d groups, want 1", len(groups))
			}
			if got := kept(groups[0].Keep); !slices.Equal(got, tt.wantKeep) {
				t.Errorf("keep:\n got %q\nwant %q", got, tt.wantKeep)
			}
			if got := ids(groups[0].Remove); !slices.Equal(got, tt.wantRemove) {
				t.Errorf("remove: got %q, want %q", got, tt.wantRemove)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	snaps := []retention.Snapshot{snap("a", "2024-03-01 10:00"), snap("b", "2024-03-02 10:00", "x")}
	tests := []struct {
		name    string
		policy  retention.Policy
		wantErr error
		wantMsg string // in the message, if set
	}{
		{name: "empty policy", policy: retention.Policy{}, wantErr: retention.ErrEmptyPolicy},
		{name: "count below unlimited", policy: retention.Policy{Daily: -2}, wantErr: retention.ErrInvalid, wantMsg: "daily count -2"},
		{name: "negative within", policy: retention.Policy{Within: retention.Duration{Days: -1}}, wantErr: retention.ErrInvalid, wantMsg: "within"},
		{name: "negative daily within", policy: retention.Policy{WithinDaily: retention.Duration{Hours: -3}}, wantErr: retention.ErrInvalid, wantMsg: "daily within"},
		{name: "hours beyond time.Duration", policy: retention.Policy{Within: retention.Duration{Hours: 1 << 40}}, wantErr: retention.ErrInvalid},
		{name: "tags alone match nothing", policy: retention.Policy{KeepTags: []string{"nope"}}, wantErr: retention.ErrRemovesAll, wantMsg: "host h, path /p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			groups, err := retention.Apply(snaps, tt.policy, retention.DefaultGroupBy, at("2024-06-01 00:00"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not name %q", err, tt.wantMsg)
			}
			if groups != nil {
				t.Errorf("groups = %v, want none with an error", groups)
			}
		})
	}
}

func TestApplyNoSnapshots(t *testing.T) {
	t.Parallel()
	groups, err := retention.Apply(nil, retention.Policy{Last: 1}, retention.DefaultGroupBy, time.Now())
	if err != nil || groups != nil {
		t.Errorf("Apply(nil) = %v, %v; want no groups, no error", groups, err)
	}
}

func TestApplyGroupBy(t *testing.T) {
	t.Parallel()
	mk := func(id, host, path string, day int, tags ...string) retention.Snapshot {
		return retention.Snapshot{ID: id, Host: host, Path: path, Tags: tags, Time: time.Date(2024, 3, day, 10, 0, 0, 0, time.UTC)}
	}
	snaps := []retention.Snapshot{
		mk("b-x-1", "b", "/x", 1, "y", "x"),
		mk("a-y-2", "a", "/y", 2),
		mk("a-x-3", "a", "/x", 3, "x", "y"),
		mk("a-x-4", "a", "/x", 4),
		mk("b-x-5", "b", "/x", 5),
	}
	tests := []struct {
		name string
		by   retention.GroupBy
		want []string // "group name: keep IDs / remove IDs"
	}{
		{name: "host and path (default)", by: retention.DefaultGroupBy, want: []string{
			"host a, path /x: [a-x-4] / [a-x-3]",
			"host a, path /y: [a-y-2] / []",
			"host b, path /x: [b-x-5] / [b-x-1]",
		}},
		{name: "host", by: retention.GroupBy{Host: true}, want: []string{
			"host a: [a-x-4] / [a-x-3 a-y-2]",
			"host b: [b-x-5] / [b-x-1]",
		}},
		{name: "path", by: retention.GroupBy{Path: true}, want: []string{
			"path /x: [b-x-5] / [a-x-4 a-x-3 b-x-1]",
			"path /y: [a-y-2] / []",
		}},
		{name: "tags, in any order", by: retention.GroupBy{Tags: true}, want: []string{
			"tags []: [b-x-5] / [a-x-4 a-y-2]",
			"tags [x, y]: [a-x-3] / [b-x-1]",
		}},
		{name: "host, path and tags", by: retention.GroupBy{Host: true, Path: true, Tags: true}, want: []string{
			"host a, path /x, tags []: [a-x-4] / []",
			"host a, path /x, tags [x, y]: [a-x-3] / []",
			"host a, path /y, tags []: [a-y-2] / []",
			"host b, path /x, tags []: [b-x-5] / []",
			"host b, path /x, tags [x, y]: [b-x-1] / []",
		}},
		{name: "none", by: retention.GroupBy{}, want: []string{
			"all snapshots: [b-x-5] / [a-x-4 a-x-3 a-y-2 b-x-1]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			groups, err := retention.Apply(snaps, retention.Policy{Last: 1}, tt.by, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, g := range groups {
				var keep []string
				for _, k := range g.Keep {
					keep = append(keep, k.ID)
				}
				got = append(got, fmt.Sprintf("%s: %v / %v", g.Name(), keep, ids(g.Remove)))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("groups:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Within is measured per group: a source that stopped backing up keeps
// its own last snapshots, however old, while another group moves on.
func TestApplyWithinPerGroup(t *testing.T) {
	t.Parallel()
	old := snap("old", "2020-01-01 10:00")
	old.Host = "retired"
	snaps := []retention.Snapshot{old, snap("a", "2024-03-01 10:00"), snap("b", "2024-03-10 10:00")}
	groups, err := retention.Apply(snaps, retention.Policy{Within: retention.Duration{Days: 7}}, retention.DefaultGroupBy, at("2024-06-01 00:00"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range groups {
		got = append(got, fmt.Sprintf("%s: %q / %q", g.Name(), kept(g.Keep), ids(g.Remove)))
	}
	want := []string{
		`host h, path /p: ["b: within 7d"] / ["a"]`,
		`host retired, path /p: ["old: within 7d"] / []`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("groups:\n got %q\nwant %q", got, want)
	}
}

func TestApplyLeavesInputAlone(t *testing.T) {
	t.Parallel()
	snaps := []retention.Snapshot{snap("a", "2024-03-01 10:00", "z", "y"), snap("c", "2024-03-03 10:00"), snap("b", "2024-03-02 10:00")}
	before := []retention.Snapshot{snap("a", "2024-03-01 10:00", "z", "y"), snap("c", "2024-03-03 10:00"), snap("b", "2024-03-02 10:00")}
	if _, err := retention.Apply(snaps, retention.Policy{Daily: 1}, retention.GroupBy{Tags: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(snaps, before) {
		t.Errorf("Apply changed its input: %v, was %v", snaps, before)
	}
}

// TestApplyDocExample is the example of restic's manual: one backup every
// Sunday for twelve weeks, and forget --keep-daily 4.
func TestApplyDocExample(t *testing.T) {
	t.Parallel()
	var snaps []retention.Snapshot
	for _, s := range [][2]string{
		{"0a1f9759", "2019-09-01"}, {"46cfe4d5", "2019-09-08"}, {"f6b1f037", "2019-09-15"},
		{"eb430a5d", "2019-09-22"}, {"8cf1cb9a", "2019-09-29"}, {"5d33b116", "2019-10-06"},
		{"b9553125", "2019-10-13"}, {"e1a7b58b", "2019-10-20"}, {"8f8018c0", "2019-10-27"},
		{"59403279", "2019-11-03"}, {"dfee9fb4", "2019-11-10"}, {"e1ae2f40", "2019-11-17"},
	} {
		sn := snap(s[0], s[1]+" 11:00")
		sn.Host, sn.Path = "mopped", "/home/user/work"
		snaps = append(snaps, sn)
	}
	groups, err := retention.Apply(snaps, retention.Policy{Daily: 4}, retention.DefaultGroupBy, at("2019-11-18 00:00"))
	if err != nil {
		t.Fatal(err)
	}
	wantKeep := []string{"e1ae2f40: daily snapshot", "dfee9fb4: daily snapshot", "59403279: daily snapshot", "8f8018c0: daily snapshot"}
	wantRemove := []string{"e1a7b58b", "b9553125", "5d33b116", "8cf1cb9a", "eb430a5d", "f6b1f037", "46cfe4d5", "0a1f9759"}
	if got := kept(groups[0].Keep); !slices.Equal(got, wantKeep) {
		t.Errorf("keep: got %q, want %q", got, wantKeep)
	}
	if got := ids(groups[0].Remove); !slices.Equal(got, wantRemove) {
		t.Errorf("remove: got %q, want %q", got, wantRemove)
	}
}

// TestApplyDocHundredYears is the manual's second example: a backup every
// day for 100 years, and --keep-daily 7 --keep-weekly 5 --keep-monthly 12
// --keep-yearly 75. Each rule keeps as many snapshots as its count; they
// overlap, so fewer are kept in all.
func TestApplyDocHundredYears(t *testing.T) {
	t.Parallel()
	var snaps []retention.Snapshot
	last := time.Date(2024, 12, 31, 3, 0, 0, 0, time.UTC) // a Tuesday
	for d := time.Date(1925, 1, 1, 3, 0, 0, 0, time.UTC); !d.After(last); d = d.AddDate(0, 0, 1) {
		snaps = append(snaps, retention.Snapshot{ID: d.Format("20060102"), Time: d, Host: "h", Path: "/p"})
	}
	p := retention.Policy{Daily: 7, Weekly: 5, Monthly: 12, Yearly: 75}
	groups, err := retention.Apply(snaps, p, retention.DefaultGroupBy, last)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, k := range groups[0].Keep {
		for _, r := range k.Reasons {
			got[r]++
		}
	}
	want := map[string]int{"daily snapshot": 7, "weekly snapshot": 5, "monthly snapshot": 12, "yearly snapshot": 75}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reasons counted %v, want %v", got, want)
	}
	// 7 days (25-31 Dec 2024); weeks add 22, 15 and 8 Dec (the 7 days
	// hold the ends of two ISO weeks); months add the ends of Jan to Nov
	// 2024; years add 31 Dec of 2023 back to 1950.
	if n := len(groups[0].Keep); n != 7+3+11+74 {
		t.Errorf("kept %d snapshots, want %d", n, 7+3+11+74)
	}
	if n := len(groups[0].Keep) + len(groups[0].Remove); n != len(snaps) {
		t.Errorf("keep + remove = %d, want %d", n, len(snaps))
	}
}

// Buckets read each snapshot's time in its own location: the same instant
// can fall on different days in different zones.
func TestApplyBucketsInSnapshotLocation(t *testing.T) {
	t.Parallel()
	utc := []retention.Snapshot{
		{ID: "a", Time: time.Date(2024, 3, 1, 20, 0, 0, 0, time.UTC), Host: "h", Path: "/p"},
		{ID: "b", Time: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), Host: "h", Path: "/p"},
		{ID: "c", Time: time.Date(2024, 3, 1, 5, 0, 0, 0, time.UTC), Host: "h", Path: "/p"},
	}
	tests := []struct {
		name     string
		loc      *time.Location
		wantKeep []string
	}{
		// One day: Daily 2 keeps a and, as the oldest while it has a
		// bucket left, c.
		{name: "UTC", loc: time.UTC, wantKeep: []string{"a: daily snapshot", "c: oldest daily snapshot"}},
		// a is 2 March 05:00 in Tokyo, b and c are 1 March.
		{name: "Tokyo", loc: time.FixedZone("JST", 9*3600), wantKeep: []string{"a: daily snapshot", "b: daily snapshot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var snaps []retention.Snapshot
			for _, s := range utc {
				s.Time = s.Time.In(tt.loc)
				snaps = append(snaps, s)
			}
			groups, err := retention.Apply(snaps, retention.Policy{Daily: 2}, retention.DefaultGroupBy, time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			if got := kept(groups[0].Keep); !slices.Equal(got, tt.wantKeep) {
				t.Errorf("keep: got %q, want %q", got, tt.wantKeep)
			}
		})
	}
}
