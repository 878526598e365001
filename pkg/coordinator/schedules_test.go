package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// fakeClock is the coordinator's injected clock. It counts how often it is
// read: the scheduler reads it once at the start of every tick.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	reads int
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// ticks waits until the scheduler has run n whole ticks from now on: a tick
// that starts after the call reads the clock's current time, and has ended
// when the next one reads it.
func (c *fakeClock) ticks(t *testing.T, n int) {
	t.Helper()
	r := c.readCount()
	waitFor(t, "scheduler ticks", func() bool { return c.readCount() >= r+n+1 })
}

const scheduleTick = 10 * time.Millisecond

// setupBroker returns an embedded broker and a client on it, with no
// coordinator yet.
func setupBroker(t *testing.T) *bundle {
	t.Helper()
	b, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	bb := &bundle{
		broker: b,
		repos: repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
			return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
		}, repository.OpenOptions{CreatePlaintext: true}),
	}
	bb.nc = bb.connect(t, "client")
	if bb.js, err = jetstream.New(bb.nc); err != nil {
		t.Fatal(err)
	}
	return bb
}

// startScheduler runs a coordinator on clock and waits until its API
// answers. stop ends its Run and checks it returned nil; cleanup calls it
// too.
func (b *bundle) startScheduler(t *testing.T, clock *fakeClock) (stop func()) {
	t.Helper()
	c, err := coordinator.New(b.connect(t, "coordinator"), coordinator.Config{
		Repos: b.repos, ReaderTimeout: readerTimeout, Clock: clock.Now, ScheduleTick: scheduleTick,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("coordinator: %v", err)
				}
			case <-time.After(testDeadline):
				t.Errorf("coordinator did not stop")
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "the coordinator's schedule API", func() bool {
		_, err := b.nc.Request(queue.SubjectAPIScheduleList, queue.Encode(&queue.ScheduleListRequest{V: 1}), time.Second)
		return err == nil
	})
	return stop
}

// scheduleAPI sends req to subject and returns the micro error code ("" on
// success), the error description and the reply body.
func (b *bundle) scheduleAPI(t *testing.T, subject string, req any) (code, desc string, data []byte) {
	t.Helper()
	body, ok := req.([]byte)
	if !ok {
		body = queue.Encode(req)
	}
	msg, err := b.nc.Request(subject, body, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	return msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader), msg.Data
}

// schedule calls an endpoint answering a Schedule and fails the test on an
// error.
func (b *bundle) schedule(t *testing.T, subject string, req any) *queue.Schedule {
	t.Helper()
	code, desc, data := b.scheduleAPI(t, subject, req)
	if code != "" {
		t.Fatalf("%s: error %s: %s", subject, code, desc)
	}
	var s queue.Schedule
	if err := queue.Decode(data, &s); err != nil {
		t.Fatalf("%s answered %s: %v", subject, data, err)
	}
	return &s
}

func (b *bundle) getSchedule(t *testing.T, name string) *queue.Schedule {
	t.Helper()
	return b.schedule(t, queue.SubjectAPIScheduleGet, &queue.ScheduleRequest{V: 1, Name: name})
}

func (b *bundle) jobState(t *testing.T, id string) string {
	t.Helper()
	kv, err := b.js.KeyValue(t.Context(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), id)
	if err != nil {
		return ""
	}
	var job queue.Job
	if err := queue.Decode(entry.Value(), &job); err != nil {
		t.Fatal(err)
	}
	return job.State
}

func sameTime(a, b time.Time) bool { return a.Equal(b) }

// TestScheduleFiresOncePerWindow fires a nightly schedule on an injected
// clock: the backup runs at its window, never twice for one window, and
// after a coordinator restart the fired window stays fired, the next one
// fires, and windows missed while no coordinator ran fire once.
func TestScheduleFiresOncePerWindow(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	b.startReader(t)
	b.startCompressor(t)
	clock := &fakeClock{now: time.Date(2025, 6, 1, 23, 0, 0, 0, time.UTC)} // 01:00 in Berlin
	stop := b.startScheduler(t, clock)

	const size = 256<<10 + 100
	src := writeVolume(t, size, 3)
	repo := filepath.Join(t.TempDir(), "repo")
	s := b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "nightly", Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo,
		Cron: "0 2 * * *", Timezone: "Europe/Berlin", ChunkSize: 64 << 10, KeepPolicy: queue.KeepPolicy{KeepLast: 7},
	})
	window1 := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC) // 02:00 CEST
	if !sameTime(s.Next, window1) || s.Timezone != "Europe/Berlin" || s.KeepLast != 7 || s.Level != "fastest" {
		t.Fatalf("added schedule %+v, want next %s, zone Europe/Berlin, keep_last 7, level fastest", s, window1)
	}

	// Not yet due.
	clock.set(window1.Add(-time.Second))
	clock.ticks(t, 2)
	if ids := b.jobIDs(t); len(ids) != 0 {
		t.Fatalf("jobs before the window: %q", ids)
	}

	// Due: the backup runs and commits a snapshot.
	clock.set(window1.Add(5 * time.Second))
	id1 := queue.ScheduledJobID("nightly", window1)
	waitFor(t, "the scheduled job", func() bool { return b.jobState(t, id1) != "" })
	ev, _ := b.follow(t, id1)
	if ev.State != queue.StateSucceeded {
		t.Fatalf("scheduled backup ended %s (%s)", ev.State, ev.Error)
	}
	r, err := b.repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := r.LoadSnapshot(t.Context(), ev.SnapshotID); err != nil || snap.Size != size || snap.JobID != id1 {
		t.Fatalf("snapshot %s: %+v, %v", ev.SnapshotID, snap, err)
	}
	s = b.getSchedule(t, "nightly")
	if !sameTime(s.LastFired, window1) || s.LastJobID != id1 || !s.LastSkipped.IsZero() {
		t.Errorf("schedule after firing: %+v", s)
	}

	// The same window does not fire again, however often it is looked at.
	clock.set(window1.Add(time.Hour))
	clock.ticks(t, 3)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{id1}) {
		t.Fatalf("jobs after the window = %q, want only %s", ids, id1)
	}

	// A new coordinator on the same broker: the schedule is still there,
	// the fired window stays fired, and the next window fires.
	stop()
	clock.set(window1.Add(2 * time.Hour))
	b.startScheduler(t, clock)
	clock.ticks(t, 3)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{id1}) {
		t.Fatalf("jobs after a restart = %q, want only %s", ids, id1)
	}
	window2 := window1.Add(24 * time.Hour)
	if s := b.getSchedule(t, "nightly"); !sameTime(s.Next, window2) || !sameTime(s.LastFired, window1) {
		t.Fatalf("schedule after a restart: %+v, want next %s", s, window2)
	}
	clock.set(window2.Add(time.Second))
	id2 := queue.ScheduledJobID("nightly", window2)
	waitFor(t, "the next window's job", func() bool { return b.jobState(t, id2) != "" })
	if ev, _ := b.follow(t, id2); ev.State != queue.StateSucceeded {
		t.Fatalf("second scheduled backup ended %s (%s)", ev.State, ev.Error)
	}
}

// TestScheduleMissedWindowsFireOnce stops the coordinator over three
// windows: the one that starts next fires the newest of them, once.
func TestScheduleMissedWindowsFireOnce(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	clock := &fakeClock{now: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	stop := b.startScheduler(t, clock)
	b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "daily", Source: queue.Endpoint{Host: "nohost", Path: "/dev/sdb"}, Repo: filepath.Join(t.TempDir(), "repo"),
		Cron: "0 2 * * *",
	})
	stop()
	clock.set(time.Date(2025, 1, 4, 9, 0, 0, 0, time.UTC)) // 2, 3 and 4 January 02:00 passed
	b.startScheduler(t, clock)
	want := queue.ScheduledJobID("daily", time.Date(2025, 1, 4, 2, 0, 0, 0, time.UTC))
	waitFor(t, "the missed window's job", func() bool { return b.jobState(t, want) != "" })
	clock.ticks(t, 3)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{want}) {
		t.Errorf("jobs = %q, want only %s", ids, want)
	}
}

// TestScheduleOverlapSkipped lets a window come due while the previous
// window's backup still runs (no compressor: it cannot finish): no second
// job starts, and the schedule records the skip and why.
func TestScheduleOverlapSkipped(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	b.startReader(t) // and no compressor
	clock := &fakeClock{now: time.Date(2025, 1, 1, 10, 1, 0, 0, time.UTC)}
	b.startScheduler(t, clock)
	src := writeVolume(t, 4<<20, 4)
	b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "often", Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: filepath.Join(t.TempDir(), "repo"),
		Cron: "*/5 * * * *", ChunkSize: 64 << 10,
	})

	w1 := time.Date(2025, 1, 1, 10, 5, 0, 0, time.UTC)
	id1 := queue.ScheduledJobID("often", w1)
	clock.set(w1)
	waitFor(t, "the first window's job to run", func() bool { return b.jobState(t, id1) == queue.StateRunning })

	w2 := w1.Add(5 * time.Minute)
	clock.set(w2.Add(time.Second))
	waitFor(t, "the skip to be recorded", func() bool { return sameTime(b.getSchedule(t, "often").LastSkipped, w2) })
	s := b.getSchedule(t, "often")
	if !sameTime(s.LastFired, w1) || s.LastJobID != id1 || !strings.Contains(s.LastSkipReason, id1) || !strings.Contains(s.LastSkipReason, "running") {
		t.Errorf("schedule after an overlapping window: %+v", s)
	}
	clock.ticks(t, 3)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{id1}) {
		t.Errorf("jobs = %q, want only %s", ids, id1)
	}

	// Once the job has ended, the next window fires again.
	b.publish(t, queue.SubjectRequestCancel, queue.Encode(&queue.CancelRequest{V: 1, JobID: id1}))
	if ev, _ := b.follow(t, id1); ev.State != queue.StateCancelled {
		t.Fatalf("job %s ended %s, want cancelled", id1, ev.State)
	}
	w3 := w2.Add(5 * time.Minute)
	clock.set(w3)
	id3 := queue.ScheduledJobID("often", w3)
	waitFor(t, "the third window's job", func() bool { return b.jobState(t, id3) != "" })
	// The window is recorded just after its job is created.
	waitFor(t, "the third window recorded", func() bool { return sameTime(b.getSchedule(t, "often").LastFired, w3) })
	if s := b.getSchedule(t, "often"); !sameTime(s.LastFired, w3) || !sameTime(s.LastSkipped, w2) {
		t.Errorf("schedule after the third window: %+v", s)
	}
}

func TestSchedulePauseResume(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	clock := &fakeClock{now: time.Date(2025, 1, 1, 10, 1, 0, 0, time.UTC)}
	b.startScheduler(t, clock)
	b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "p", Source: queue.Endpoint{Host: "nohost", Path: "/dev/sdb"}, Repo: filepath.Join(t.TempDir(), "repo"),
		Cron: "*/5 * * * *",
	})
	s := b.schedule(t, queue.SubjectAPISchedulePause, &queue.ScheduleRequest{V: 1, Name: "p"})
	if !s.Paused || !s.Next.IsZero() {
		t.Fatalf("paused schedule: %+v, want paused with no next window", s)
	}
	clock.set(time.Date(2025, 1, 1, 10, 6, 0, 0, time.UTC)) // 10:05 passes while paused
	clock.ticks(t, 3)
	if ids := b.jobIDs(t); len(ids) != 0 {
		t.Fatalf("jobs of a paused schedule: %q", ids)
	}

	resumed := time.Date(2025, 1, 1, 10, 7, 0, 0, time.UTC)
	clock.set(resumed)
	s = b.schedule(t, queue.SubjectAPIScheduleResume, &queue.ScheduleRequest{V: 1, Name: "p"})
	next := time.Date(2025, 1, 1, 10, 10, 0, 0, time.UTC)
	if s.Paused || !sameTime(s.Next, next) || !sameTime(s.Resumed, resumed) {
		t.Fatalf("resumed schedule: %+v, want next %s", s, next)
	}
	clock.ticks(t, 3) // the window missed while paused does not fire
	if ids := b.jobIDs(t); len(ids) != 0 {
		t.Fatalf("jobs after resuming: %q", ids)
	}
	clock.set(next)
	waitFor(t, "the job of the first window after resuming", func() bool {
		return b.jobState(t, queue.ScheduledJobID("p", next)) != ""
	})
	if ids := b.jobIDs(t); len(ids) != 1 {
		t.Errorf("jobs = %q, want one", ids)
	}
}

// TestScheduleAPI checks the schedule endpoints: listing, removal, and
// error codes for bad requests, which leave the coordinator serving.
func TestScheduleAPI(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	clock := &fakeClock{now: time.Date(2025, 1, 1, 10, 1, 0, 0, time.UTC)}
	b.startScheduler(t, clock)
	repo := filepath.Join(t.TempDir(), "repo")
	add := func(mod func(r *queue.ScheduleAddRequest)) *queue.ScheduleAddRequest {
		r := &queue.ScheduleAddRequest{V: 1, Name: "n", Source: queue.Endpoint{Host: "h", Path: "/dev/sdb"}, Repo: repo, Cron: "0 2 * * *"}
		if mod != nil {
			mod(r)
		}
		return r
	}
	b.schedule(t, queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Name = "b-second" }))
	b.schedule(t, queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Name = "a-first"; r.Level = "best" }))

	tests := []struct {
		name     string
		subject  string
		req      any
		wantCode string
		wantDesc string
	}{
		{"bad cron", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Cron = "0 2 * *" }), "400", "expected exactly 5 fields"},
		{"cron out of range", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Cron = "0 25 * * *" }), "400", `"0 25 * * *"`},
		{"no cron", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Cron = "" }), "400", "no cron expression"},
		{"unknown time zone", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Timezone = "Europe/Atlantis" }), "400", "Europe/Atlantis"},
		{"bad name", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Name = "a b" }), "400", "schedule name"},
		{"long name", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Name = strings.Repeat("x", 65) }), "400", "longer than"},
		{"relative source", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Source.Path = "vol.img" }), "400", "absolute"},
		{"no repository", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Repo = "" }), "400", "no repository"},
		{"bad level", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Level = "max" }), "400", "max"},
		{"bad chunk size", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.ChunkSize = 1000 }), "400", "1000"},
		{"negative keep", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.KeepLast = -2 }), "400", "keep_last"},
		{"name taken", queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Name = "a-first" }), "400", "already exists"},
		{"unknown field", queue.SubjectAPIScheduleAdd, []byte(`{"v":1,"name":"x","bogus":1}`), "400", "bogus"},
		{"not json", queue.SubjectAPIScheduleList, []byte(`{`), "400", ""},
		{"get unknown", queue.SubjectAPIScheduleGet, &queue.ScheduleRequest{V: 1, Name: "nope"}, "404", "nope"},
		{"pause unknown", queue.SubjectAPISchedulePause, &queue.ScheduleRequest{V: 1, Name: "nope"}, "404", "nope"},
		{"resume unknown", queue.SubjectAPIScheduleResume, &queue.ScheduleRequest{V: 1, Name: "nope"}, "404", "nope"},
		{"rm unknown", queue.SubjectAPIScheduleRm, &queue.ScheduleRequest{V: 1, Name: "nope"}, "404", "nope"},
		{"rm bad name", queue.SubjectAPIScheduleRm, &queue.ScheduleRequest{V: 1, Name: "../x"}, "400", "schedule name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, desc, data := b.scheduleAPI(t, tt.subject, tt.req)
			if code != tt.wantCode || !strings.Contains(desc, tt.wantDesc) {
				t.Errorf("error %q %q (body %s), want %s mentioning %q", code, desc, data, tt.wantCode, tt.wantDesc)
			}
		})
	}

	// Still serving: the list holds the two good schedules, by name.
	code, desc, data := b.scheduleAPI(t, queue.SubjectAPIScheduleList, &queue.ScheduleListRequest{V: 1})
	var list queue.ScheduleListReply
	if code != "" || json.Unmarshal(data, &list) != nil {
		t.Fatalf("list: %s %s %s", code, desc, data)
	}
	var names []string
	for _, s := range list.Schedules {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"a-first", "b-second"}) || list.Schedules[0].Level != "best" || list.Schedules[1].ChunkSize == 0 {
		t.Fatalf("list = %+v", list.Schedules)
	}
	if got := b.schedule(t, queue.SubjectAPIScheduleRm, &queue.ScheduleRequest{V: 1, Name: "a-first"}); got.Name != "a-first" {
		t.Errorf("rm answered %+v", got)
	}
	if code, _, _ := b.scheduleAPI(t, queue.SubjectAPIScheduleGet, &queue.ScheduleRequest{V: 1, Name: "a-first"}); code != "404" {
		t.Errorf("get after rm: code %q, want 404", code)
	}
	// A removed name can be used again.
	b.schedule(t, queue.SubjectAPIScheduleAdd, add(func(r *queue.ScheduleAddRequest) { r.Name = "a-first" }))
}

// TestScheduleKeepPolicy: after each successful scheduled backup the
// schedule's keep policy forgets the source's other snapshots, and the
// schedule records what it forgot; another source's snapshots in the same
// repository are left alone. A prune schedule then starts a prune of the
// repository, which deletes the chunks only the forgotten snapshots named.
func TestScheduleKeepPolicy(t *testing.T) {
	t.Parallel()
	b := setupBroker(t)
	b.repos.SetTiming(repository.FastTiming) // every party runs in this process
	b.startReader(t)
	b.startCompressor(t)
	clock := &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	b.startScheduler(t, clock)

	repo := filepath.Join(t.TempDir(), "repo")
	src, other := writeVolume(t, 256<<10, 5), writeVolume(t, 128<<10, 6)
	// Another source's snapshot, which no policy of this schedule touches.
	b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "other", Source: queue.Endpoint{Host: readerHost, Path: other}, Repo: repo,
		Cron: "30 * * * *", ChunkSize: 64 << 10, KeepPolicy: queue.KeepPolicy{KeepLast: 1},
	})
	clock.set(time.Date(2025, 6, 1, 12, 30, 1, 0, time.UTC))
	otherID := queue.ScheduledJobID("other", time.Date(2025, 6, 1, 12, 30, 0, 0, time.UTC))
	waitFor(t, "the other source's job", func() bool { return b.jobState(t, otherID) != "" })
	if ev, _ := b.follow(t, otherID); ev.State != queue.StateSucceeded {
		t.Fatalf("other backup ended %s (%s)", ev.State, ev.Error)
	}
	b.schedule(t, queue.SubjectAPISchedulePause, &queue.ScheduleRequest{V: 1, Name: "other"})

	b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "hourly", Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo,
		Cron: "0 * * * *", ChunkSize: 64 << 10, KeepPolicy: queue.KeepPolicy{KeepLast: 2},
	})
	var snaps []string
	for h := 13; h <= 15; h++ {
		window := time.Date(2025, 6, 1, h, 0, 0, 0, time.UTC)
		// The source changes every hour.
		if err := os.WriteFile(src, bytes.Repeat([]byte{byte(h)}, 256<<10), 0o600); err != nil {
			t.Fatal(err)
		}
		clock.set(window.Add(time.Second))
		id := queue.ScheduledJobID("hourly", window)
		waitFor(t, "the scheduled backup", func() bool { return b.jobState(t, id) != "" })
		ev, _ := b.follow(t, id)
		if ev.State != queue.StateSucceeded {
			t.Fatalf("scheduled backup ended %s (%s)", ev.State, ev.Error)
		}
		snaps = append(snaps, ev.SnapshotID)
		// The policy is applied before the job ends.
		s := b.getSchedule(t, "hourly")
		f := s.LastForget
		if f == nil || f.JobID != id || f.Error != "" {
			t.Fatalf("after %s: last forget %+v, want one of job %s without error", window, f, id)
		}
		wantForgot := snaps[:max(0, len(snaps)-2)]
		if f.Forgotten != len(wantForgot) || !slices.Equal(f.Snapshots, wantForgot) || f.Kept != min(len(snaps), 2) {
			t.Errorf("after %s: forgot %d %q, kept %d; want %q forgotten, %d kept", window, f.Forgotten, f.Snapshots, f.Kept, wantForgot, min(len(snaps), 2))
		}
	}
	r, err := b.repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	left, err := r.SnapshotIDs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{snaps[1], snaps[2], otherSnapshot(t, b, otherID)}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("snapshots left %q, want the last two of the source and the other source's %q", left, want)
	}

	// A prune schedule prunes the repository at its window. (The hourly
	// schedule is paused first: its window at the same time would back up
	// and forget beside the prune.)
	b.schedule(t, queue.SubjectAPISchedulePause, &queue.ScheduleRequest{V: 1, Name: "hourly"})
	p := b.schedule(t, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "weekly-prune", Kind: queue.KindPrune, Repo: repo, Cron: "0 4 * * 0",
	})
	if p.Kind != queue.KindPrune || p.Repo != repo {
		t.Fatalf("prune schedule %+v", p)
	}
	window := time.Date(2025, 6, 8, 4, 0, 0, 0, time.UTC) // a Sunday
	clock.set(window.Add(time.Second))
	id := queue.ScheduledJobID("weekly-prune", window)
	waitFor(t, "the scheduled prune", func() bool { return b.jobState(t, id) != "" })
	if ev, _ := b.follow(t, id); ev.State != queue.StateSucceeded {
		t.Fatalf("scheduled prune ended %s (%s)", ev.State, ev.Error)
	}
	pr, err := r.LoadPrune(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	// The first snapshot's content (256 KiB of one byte, in four equal
	// chunks) was named by it alone: one chunk.
	if pr.Phase != repository.PhaseDone || pr.Deleted != 1 {
		t.Errorf("scheduled prune: %+v, want done, the forgotten snapshot's one chunk deleted", pr)
	}
}

// otherSnapshot returns the snapshot job id committed.
func otherSnapshot(t *testing.T, b *bundle, id string) string {
	t.Helper()
	ev, _ := b.follow(t, id)
	return ev.SnapshotID
}
