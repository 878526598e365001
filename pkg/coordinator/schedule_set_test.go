package coordinator_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestScheduleSet changes a schedule that has fired: its history stays,
// the new timing applies from the change on (a window of it that passed
// before does not fire), and bad values are refused as add refuses them.
func TestScheduleSet(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	b.startReader(t)
	b.startCompressor(t)
	clock := &fakeClock{now: time.Date(2025, 3, 1, 1, 0, 0, 0, time.UTC)}
	b.startScheduler(t, clock)
	src := writeVolume(t, 128<<10, 5)
	repo := filepath.Join(t.TempDir(), "repo")
	added := b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "nightly", Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo, Cron: "0 2 * * *", ChunkSize: 64 << 10,
	})
	w1 := time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC)
	id1 := queue.ScheduledJobID("nightly", w1)
	clock.set(w1.Add(time.Second))
	waitFor(t, "the first window recorded", func() bool { return sameTime(b.getSchedule(t, "nightly").LastFired, w1) })
	if ev, _ := b.follow(t, id1); ev.State != queue.StateSucceeded {
		t.Fatalf("scheduled backup ended %s (%s)", ev.State, ev.Error)
	}

	// At 10:00, move it to 08:00 daily, in another zone and level: the
	// 08:00 window that passed today does not fire.
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	clock.set(now)
	cron, zone, level := "0 8 * * *", "Europe/Berlin", "best"
	s := b.schedule(t, queue.SubjectAPIScheduleSet, &queue.ScheduleSetRequest{V: 1, Name: "nightly", Cron: &cron, Timezone: &zone, Level: &level})
	next := time.Date(2025, 3, 2, 7, 0, 0, 0, time.UTC) // 08:00 CET
	if s.Cron != cron || s.Timezone != zone || s.Level != "best" || s.Repo != repo || s.ChunkSize != 64<<10 ||
		!sameTime(s.Created, added.Created) || !sameTime(s.LastFired, w1) || s.LastJobID != id1 ||
		!sameTime(s.Retimed, now) || !sameTime(s.Next, next) {
		t.Fatalf("changed schedule %+v, want the new timing and level with its history, next %s", s, next)
	}
	clock.ticks(t, 3)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{id1}) {
		t.Fatalf("jobs after the change = %q, want only %s", ids, id1)
	}
	// The next window of the new timing fires.
	clock.set(next.Add(time.Second))
	id2 := queue.ScheduledJobID("nightly", next)
	waitFor(t, "the new timing's window", func() bool { return b.jobState(t, id2) != "" })
	if ev, _ := b.follow(t, id2); ev.State != queue.StateSucceeded {
		t.Fatalf("second scheduled backup ended %s (%s)", ev.State, ev.Error)
	}

	// Only the keep-last: the timing and its Retimed stay.
	keep := 3
	s = b.schedule(t, queue.SubjectAPIScheduleSet, &queue.ScheduleSetRequest{V: 1, Name: "nightly", KeepLast: &keep})
	if s.KeepLast != 3 || s.Cron != cron || !sameTime(s.Retimed, now) {
		t.Errorf("schedule after changing keep_last: %+v", s)
	}

	// More keep rules: those given change, the others stay; 0 turns one off.
	daily, within, off := 7, "1y", 0
	s = b.schedule(t, queue.SubjectAPIScheduleSet, &queue.ScheduleSetRequest{V: 1, Name: "nightly", KeepDaily: &daily, KeepWithin: &within})
	if want := (queue.KeepPolicy{KeepLast: 3, KeepDaily: 7, KeepWithin: "1y"}); s.KeepPolicy != want {
		t.Errorf("keep policy after setting keep_daily and keep_within: %+v, want %+v", s.KeepPolicy, want)
	}
	s = b.schedule(t, queue.SubjectAPIScheduleSet, &queue.ScheduleSetRequest{V: 1, Name: "nightly", KeepLast: &off})
	if want := (queue.KeepPolicy{KeepDaily: 7, KeepWithin: "1y"}); s.KeepPolicy != want {
		t.Errorf("keep policy after turning keep_last off: %+v, want %+v", s.KeepPolicy, want)
	}

	bad := "0 8 * *"
	big := int64(1 << 30)
	forever, negative := "forever", -5
	for _, tt := range []struct {
		name string
		req  any
		code string
	}{
		{"bad cron", &queue.ScheduleSetRequest{V: 1, Name: "nightly", Cron: &bad}, "400"},
		{"bad chunk size", &queue.ScheduleSetRequest{V: 1, Name: "nightly", ChunkSize: &big}, "400"},
		{"nothing to change", &queue.ScheduleSetRequest{V: 1, Name: "nightly"}, "400"},
		{"bad keep_within", &queue.ScheduleSetRequest{V: 1, Name: "nightly", KeepWithin: &forever}, "400"},
		{"negative keep_hourly", &queue.ScheduleSetRequest{V: 1, Name: "nightly", KeepHourly: &negative}, "400"},
		{"unknown schedule", &queue.ScheduleSetRequest{V: 1, Name: "weekly", Cron: &cron}, "404"},
		{"unknown field", []byte(`{"v":1,"name":"nightly","source":{"host":"h","path":"/p"}}`), "400"},
	} {
		if code, desc, _ := b.scheduleAPI(t, queue.SubjectAPIScheduleSet, tt.req); code != tt.code {
			t.Errorf("%s: code %q (%s), want %s", tt.name, code, desc, tt.code)
		}
	}
	if s := b.getSchedule(t, "nightly"); s.Cron != cron || s.ChunkSize != 64<<10 || s.KeepWithin != "1y" || s.KeepHourly != 0 {
		t.Errorf("a refused change changed the schedule: %+v", s)
	}
}
