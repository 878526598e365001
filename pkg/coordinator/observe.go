package coordinator

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/schedule"
)

// errNotReady is what Ready says until Run serves.
var errNotReady = errors.New("coordinator: streams and API not set up yet")

// Ready reports whether the coordinator serves: its streams, buckets and
// API are set up and it takes requests (the /readyz probe's check).
func (c *Coordinator) Ready() error {
	if !c.ready.Load() {
		return errNotReady
	}
	return nil
}

// observer publishes, as metrics, what alerts watch of the fleet: the live
// workers by role, how long running jobs have gone without progress, and
// each schedule's next, last fired and last skipped window.
type observer struct {
	c *Coordinator
	// seen is each running job's progress when it last moved.
	seen map[string]progressMark
}

type progressMark struct {
	chunks int
	bytes  int64
	state  string
	at     time.Time
}

func newObserver(c *Coordinator) *observer {
	return &observer{c: c, seen: make(map[string]progressMark)}
}

// observe updates the metrics once.
func (o *observer) observe(ctx context.Context) {
	m := o.c.cfg.Metrics
	if m == nil {
		return
	}
	if workers, err := queue.ListWorkers(ctx, o.c.js); err == nil {
		counts := map[string]int{}
		for _, w := range workers {
			counts[w.Role]++
		}
		for _, role := range metrics.WorkerRoles {
			m.Workers(role, counts[role])
		}
	}
	o.jobs(ctx, m)
	o.schedules(ctx, m)
}

// jobs sets bulk_job_idle_seconds from the running jobs' records (saved
// every few seconds while they make progress).
func (o *observer) jobs(ctx context.Context, m *metrics.Metrics) {
	o.c.mu.Lock()
	ids := make([]string, 0, len(o.c.running))
	for id := range o.c.running {
		ids = append(ids, id)
	}
	o.c.mu.Unlock()
	now := time.Now()
	idle := map[string]time.Duration{}
	seen := make(map[string]progressMark, len(ids))
	for _, id := range ids {
		job, err := o.c.loadJob(ctx, id)
		if err != nil || queue.Final(job.State) {
			continue
		}
		mark := progressMark{chunks: job.Progress.ChunksDone, bytes: job.Progress.BytesDone, state: job.State, at: now}
		if prev, ok := o.seen[id]; ok && prev.chunks == mark.chunks && prev.bytes == mark.bytes && prev.state == mark.state {
			mark.at = prev.at
		}
		seen[id] = mark
		idle[job.Kind] = max(idle[job.Kind], now.Sub(mark.at))
	}
	o.seen = seen
	for _, kind := range metrics.JobKinds {
		m.JobIdle(kind, idle[kind])
	}
}

// schedules sets the schedule metrics.
func (o *observer) schedules(ctx context.Context, m *metrics.Metrics) {
	kv, err := o.c.scheduleKV(ctx)
	if err != nil {
		return
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return
	}
	var states []metrics.ScheduleState
	for name := range lister.Keys() {
		s, _, err := loadSchedule(ctx, kv, name)
		if err != nil {
			continue
		}
		st := metrics.ScheduleState{Name: s.Name, LastFired: s.LastFired, Skipped: s.LastSkipped}
		if spec, err := schedule.Parse(s.Cron, s.Timezone); err == nil {
			st.Next = schedule.Next(timing(s, spec), s.Handled(), o.c.cfg.Clock())
		}
		states = append(states, st)
	}
	slices.SortFunc(states, func(a, b metrics.ScheduleState) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	m.Schedules(states)
}
