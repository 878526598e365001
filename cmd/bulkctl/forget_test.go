package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
)

// planted is a snapshot planted in a repository for forget: only what a
// policy reads (ID, time, host and path) matters.
type planted struct {
	id, host, path, time string
}

// plant creates a directory repository holding empty volume snapshots.
func plant(t *testing.T, snaps []planted) (string, *repository.Repository) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	st, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(t.Context(), st, repository.OpenOptions{CreatePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range snaps {
		at, err := time.Parse(time.DateTime, p.time)
		if err != nil {
			t.Fatal(err)
		}
		s := &manifest.Snapshot{Version: 1, ID: p.id, Time: at, Host: p.host, Path: p.path, Mode: manifest.ModeVolume,
			SourceKind: "file", ChunkSize: 4096, Hash: "sha256", Compression: "zstd", Level: "fastest", Chunks: []manifest.Chunk{}}
		if err := repo.SaveSnapshot(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	return dir, repo
}

// resticManual is the repository of restic's manual ("Removing backup
// snapshots"): five snapshots of four sources.
var resticManual = []planted{
	{"40dc1520", "kasimir", "/home/user/work", "2015-05-08 21:38:30"},
	{"79766175", "kasimir", "/home/user/work", "2015-05-08 21:40:19"},
	{"bdbd3439", "luigi", "/home/art", "2015-05-08 21:45:17"},
	{"590c8fc8", "kazik", "/srv", "2015-05-08 21:47:38"},
	{"9f0bc19e", "luigi", "/srv", "2015-05-08 21:46:11"},
}

// resticSundays is the manual's policy example: a backup of one source
// every Sunday for twelve weeks.
var resticSundays = func() []planted {
	var out []planted
	for i, id := range []string{"0a1f9759", "46cfe4d5", "f6b1f037", "eb430a5d", "8cf1cb9a", "5d33b116",
		"b9553125", "e1a7b58b", "8f8018c0", "59403279", "dfee9fb4", "e1ae2f40"} {
		day := time.Date(2019, 9, 1+7*i, 11, 0, 0, 0, time.UTC)
		out = append(out, planted{id, "mopped", "/home/user/work", day.Format(time.DateTime)})
	}
	return out
}()

// hourly is one source backed up every six hours for twelve days, from 1
// March 2024 00:00 to 12 March 18:00, and another source once.
var hourly = func() []planted {
	var out []planted
	for i := range 48 {
		at := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(6*i) * time.Hour)
		out = append(out, planted{fmt.Sprintf("aa%02d", i), "db1", "/srv", at.Format(time.DateTime)})
	}
	return append(out, planted{"bb00", "web", "/var/www", "2024-01-01 00:00:00"})
}()

func TestForget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		snaps []planted
		args  []string
		// keep maps each kept snapshot to its reasons, joined by "; "
		// (not checked for snapshots forgotten by ID).
		keep      map[string]string
		forgotten []string // newest first within each group, groups by host and path
	}{
		{
			// The manual's --keep-last 1: each source keeps its newest.
			name: "manual keep-last 1", snaps: resticManual, args: []string{"--keep-last", "1"},
			keep:      map[string]string{"79766175": "last snapshot", "590c8fc8": "last snapshot", "bdbd3439": "last snapshot", "9f0bc19e": "last snapshot"},
			forgotten: []string{"40dc1520"},
		},
		{
			name: "manual by ID", snaps: resticManual, args: []string{"bdbd3439"},
			forgotten: []string{"bdbd3439"},
		},
		{
			name: "manual by unique prefixes", snaps: resticManual, args: []string{"40dc", "9f0b", "40dc1520"},
			forgotten: []string{"40dc1520", "9f0bc19e"},
		},
		{
			name: "manual host and path", snaps: resticManual, args: []string{"--keep-last", "1", "--host", "kasimir", "--path", "/home/user/work"},
			keep: map[string]string{"79766175": "last snapshot"}, forgotten: []string{"40dc1520"},
		},
		{
			name: "manual grouped by host", snaps: resticManual, args: []string{"--keep-last", "1", "--group-by", "host"},
			keep:      map[string]string{"79766175": "last snapshot", "590c8fc8": "last snapshot", "9f0bc19e": "last snapshot"},
			forgotten: []string{"40dc1520", "bdbd3439"},
		},
		{
			// The manual: "--keep-daily 4" keeps the newest four of
			// twelve weekly backups: each is the newest of its day.
			name: "manual Sundays keep-daily 4", snaps: resticSundays, args: []string{"--keep-daily", "4"},
			keep:      map[string]string{"e1ae2f40": "daily snapshot", "dfee9fb4": "daily snapshot", "59403279": "daily snapshot", "8f8018c0": "daily snapshot"},
			forgotten: []string{"e1a7b58b", "b9553125", "5d33b116", "8cf1cb9a", "eb430a5d", "f6b1f037", "46cfe4d5", "0a1f9759"},
		},
		{
			// Weeks are ISO weeks from Monday: Sundays are the newest of
			// each, and the newest of October is 27 October.
			name: "manual Sundays keep-weekly 2 keep-monthly 2", snaps: resticSundays, args: []string{"--keep-weekly", "2", "--keep-monthly", "2"},
			keep:      map[string]string{"e1ae2f40": "weekly snapshot; monthly snapshot", "dfee9fb4": "weekly snapshot", "8f8018c0": "monthly snapshot"},
			forgotten: []string{"59403279", "e1a7b58b", "b9553125", "5d33b116", "8cf1cb9a", "eb430a5d", "f6b1f037", "46cfe4d5", "0a1f9759"},
		},
		{
			// Within counts back from the source's newest snapshot (12
			// March 18:00), not from now: 2d keeps what is after 10 March
			// 18:00. web's only snapshot is its newest.
			name: "keep-within 2d", snaps: hourly, args: []string{"--keep-within", "2d"},
			keep: map[string]string{"aa47": "within 2d", "aa46": "within 2d", "aa45": "within 2d", "aa44": "within 2d",
				"aa43": "within 2d", "aa42": "within 2d", "aa41": "within 2d", "aa40": "within 2d", "bb00": "within 2d"},
		},
		{
			name: "keep-hourly 3 keep-daily unlimited", snaps: hourly, args: []string{"--keep-hourly", "3", "--keep-daily", "unlimited", "--path", "/srv"},
			keep: func() map[string]string {
				// Unlimited always has days left, so it keeps the oldest
				// snapshot too.
				m := map[string]string{"aa47": "hourly snapshot; daily snapshot", "aa46": "hourly snapshot", "aa45": "hourly snapshot",
					"aa00": "oldest daily snapshot"}
				for d := range 11 { // the last of each earlier day, at 18:00
					m[fmt.Sprintf("aa%02d", 4*d+3)] = "daily snapshot"
				}
				return m
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			byID := !slices.ContainsFunc(tt.args, func(a string) bool { return strings.HasPrefix(a, "--keep") })
			wantForgotten := tt.forgotten
			if tt.keep != nil && wantForgotten == nil {
				// Everything of the selected groups not kept.
				wantForgotten = []string{}
			}
			all := make(map[string]bool)
			for _, p := range tt.snaps {
				all[p.id] = true
			}
			for _, dryRun := range []bool{true, false} {
				dir, repo := plant(t, tt.snaps)
				args := append([]string{"forget", "-r", dir, "--json"}, tt.args...)
				if dryRun {
					args = append(args, "--dry-run")
				}
				r := ok(t, args...)
				var res forgetResult
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
					t.Fatalf("forget --json printed %q: %v", r.stdout, err)
				}
				if res.DryRun != dryRun {
					t.Errorf("dry_run %v, want %v", res.DryRun, dryRun)
				}
				keep := make(map[string]string)
				var removed []string
				for _, g := range res.Groups {
					for _, k := range g.Keep {
						keep[k.ID] = strings.Join(k.Reasons, "; ")
					}
					for _, s := range g.Remove {
						removed = append(removed, s.ID)
					}
				}
				if tt.keep != nil && !mapsEqual(keep, tt.keep) {
					t.Errorf("kept %v, want %v", keep, tt.keep)
				}
				if tt.forgotten != nil && !slices.Equal(res.Forgotten, tt.forgotten) {
					t.Errorf("forgotten %q, want %q", res.Forgotten, tt.forgotten)
				}
				if !slices.Equal(res.Forgotten, removed) {
					t.Errorf("forgotten %q, but the groups remove %q", res.Forgotten, removed)
				}
				if !byID {
					for id := range keep {
						if slices.Contains(res.Forgotten, id) {
							t.Errorf("%s both kept and forgotten", id)
						}
					}
				}
				// What is left in the repository: everything on a dry run,
				// else everything but what was forgotten.
				left, err := repo.SnapshotIDs(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for id := range all {
					if dryRun || !slices.Contains(res.Forgotten, id) {
						want = append(want, id)
					}
				}
				slices.Sort(want)
				if !slices.Equal(left, want) {
					t.Errorf("dry run %v: left %q, want %q", dryRun, left, want)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestForgetText: the dry run says, per source, what it would remove and
// why it keeps each snapshot it keeps; the real run says what it forgot
// and what to run next.
func TestForgetText(t *testing.T) {
	t.Parallel()
	dir, _ := plant(t, resticManual)
	r := ok(t, "forget", "-r", dir, "--keep-last", "1", "--dry-run")
	for _, want := range []string{
		"host kasimir, path /home/user/work: keep 1 snapshot, would remove 1",
		"keep          79766175", "last snapshot",
		"would remove  40dc1520",
		"host luigi, path /srv: keep 1 snapshot, would remove 0",
		"dry run: would forget 1 snapshot",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run does not say %q:\n%s", want, r.stdout)
		}
	}
	r = ok(t, "forget", "-r", dir, "--keep-last", "1")
	if want := `forgot 1 snapshot; "bulkctl prune" deletes the chunks only they named`; !strings.Contains(r.stdout, want) {
		t.Errorf("forget does not say %q:\n%s", want, r.stdout)
	}
	r = ok(t, "forget", "-r", dir, "--keep-last", "1")
	if !strings.Contains(r.stdout, "forgot 0 snapshots\n") {
		t.Errorf("a second forget does not say it forgot nothing:\n%s", r.stdout)
	}
	r = ok(t, "snapshots", "-r", dir)
	if strings.Contains(r.stdout, "40dc1520") || !strings.Contains(r.stdout, "79766175") {
		t.Errorf("snapshots after forget:\n%s", r.stdout)
	}
}

func TestForgetErrors(t *testing.T) {
	t.Parallel()
	snaps := append(slices.Clone(resticManual), planted{"9f0bd000", "luigi", "/srv", "2015-05-09 08:00:00"})
	dir, _ := plant(t, snaps)
	tests := []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"nothing to forget", exitUsage, []string{"give the SNAPSHOT IDs to forget, or a keep policy"}, nil},
		{"IDs and a policy", exitUsage, []string{"not both"}, []string{"40dc1520", "--keep-last", "1"}},
		{"host with IDs", exitUsage, []string{"--host and --path select snapshots for a keep policy"}, []string{"40dc1520", "--host", "kasimir"}},
		{"negative count", exitUsage, []string{"keep-last"}, []string{"--keep-last", "-2"}},
		{"bad count", exitUsage, []string{"keep-daily"}, []string{"--keep-daily", "lots"}},
		{"bad period", exitUsage, []string{"keep-within"}, []string{"--keep-within", "2w"}},
		{"bad group", exitUsage, []string{"--group-by"}, []string{"--keep-last", "1", "--group-by", "colour"}},
		{"unknown ID", exitError, []string{"not found"}, []string{"deadbeef"}},
		{"ambiguous prefix", exitError, []string{"ambiguous"}, []string{"9f0b"}},
		{"no repository", exitUsage, []string{"no repository given"}, []string{"--keep-last", "1", "-r", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fails(t, tt.code, tt.want, append([]string{"forget", "-r", dir}, tt.args...)...)
		})
	}
	// None of that forgot anything.
	r := ok(t, "snapshots", "-r", dir, "--json")
	if n := strings.Count(r.stdout, `"id"`); n != len(snaps) {
		t.Errorf("%d snapshots left, want %d:\n%s", n, len(snaps), r.stdout)
	}
}
