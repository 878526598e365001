package coordinator_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestScheduleSelection adds a schedule that leaves parts of a tree out
// and tags its snapshots: its window's backup does both, records the
// host the schedule names, and finds its parent by that host.
func TestScheduleSelection(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	b.startReader(t)
	b.startCompressor(t)
	clock := &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	b.startScheduler(t, clock)

	src := filepath.Join(t.TempDir(), "src")
	for _, p := range []string{"keep.txt", "skip.o", "tmp/x", "big"} {
		data := []byte(p)
		if p == "big" {
			data = make([]byte, 5000)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(src, "repo") // inside the source: left out
	add := &queue.ScheduleAddRequest{
		V: 1, Name: "tree", Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo, Cron: "0 * * * *",
		Selection: queue.Selection{Exclude: []string{"*.o", "/tmp/"}, ExcludeLargerThan: 4096},
		Labels:    queue.Labels{Tags: []string{"nightly", "db", "nightly"}, Host: "web1"},
	}
	s := b.schedule(t, queue.SubjectAPIScheduleAdd, add)
	if !slices.Equal(s.Exclude, add.Exclude) || s.ExcludeLargerThan != 4096 || !slices.Equal(s.Tags, []string{"db", "nightly"}) || s.Host != "web1" {
		t.Fatalf("added schedule %+v: selection or labels lost", s)
	}
	bad := *add
	bad.Name, bad.Selection = "bad", queue.Selection{Exclude: []string{"a["}}
	if code, desc, _ := b.scheduleAPI(t, queue.SubjectAPIScheduleAdd, &bad); code != "400" {
		t.Errorf("a schedule with a bad pattern: code %q (%s), want 400", code, desc)
	}

	var snaps []*manifest.Snapshot
	for i, window := range []time.Time{time.Date(2025, 6, 1, 13, 0, 0, 0, time.UTC), time.Date(2025, 6, 1, 14, 0, 0, 0, time.UTC)} {
		clock.set(window.Add(time.Second))
		id := queue.ScheduledJobID("tree", window)
		waitFor(t, "the scheduled job", func() bool { return b.jobState(t, id) != "" })
		ev, _ := b.follow(t, id)
		if ev.State != queue.StateSucceeded {
			t.Fatalf("scheduled backup %d ended %s (%s)", i, ev.State, ev.Error)
		}
		r, err := b.repos.Get(t.Context(), repo, false)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := r.LoadSnapshot(t.Context(), ev.SnapshotID)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, snap)
	}
	for _, snap := range snaps {
		var paths []string
		for _, e := range snap.Files {
			paths = append(paths, e.Path)
		}
		if !slices.Equal(paths, []string{".", "keep.txt"}) || snap.Host != "web1" || !slices.Equal(snap.Tags, []string{"db", "nightly"}) ||
			snap.Stats.Excluded != 4 {
			t.Errorf("snapshot lists %q, host %q, tags %q, %d excluded; want [. keep.txt], web1, [db nightly], 4",
				paths, snap.Host, snap.Tags, snap.Stats.Excluded)
		}
	}
	if st := snaps[1].Stats; st.UnchangedFiles != 1 || st.NewFiles != 0 {
		t.Errorf("second backup: %d unchanged, %d new; want its parent found under host web1", st.UnchangedFiles, st.NewFiles)
	}
}
