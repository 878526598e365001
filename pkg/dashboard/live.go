package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The live feed.
//
// One hub per dashboard holds one core NATS subscription to every job's
// events (queue.EventSubject("*")) and one watch of the workers bucket,
// however many browsers are open. Each browser's /events stream has a
// mailbox that keeps only the newest update per job (and the newest
// worker list): the hub never waits for a browser, a slow browser skips
// intermediate progress but never a job's final state, and memory per
// browser is bounded by the jobs that changed since its last write.

// ErrTooManyStreams is returned when MaxStreams browsers are connected.
var ErrTooManyStreams = errors.New("dashboard: too many live streams")

// mailbox is one browser's pending updates.
type mailbox struct {
	job     string // only this job's updates; "" for all jobs and the workers
	wake    chan struct{}
	mu      sync.Mutex
	jobs    map[string]jobView
	order   []string
	workers []workerView // nil: none pending
}

// put queues a job update, replacing an older one of the same job. With
// onlyNew, an update already pending (a newer one) is kept.
func (m *mailbox) put(v jobView, onlyNew bool) {
	if m.job != "" && v.ID != m.job {
		return
	}
	m.mu.Lock()
	if _, ok := m.jobs[v.ID]; !ok {
		m.order = append(m.order, v.ID)
	} else if onlyNew {
		m.mu.Unlock()
		return
	}
	m.jobs[v.ID] = v
	m.mu.Unlock()
	m.poke()
}

// putWorkers queues the worker list.
func (m *mailbox) putWorkers(ws []workerView) {
	if m.job != "" {
		return
	}
	m.mu.Lock()
	m.workers = ws
	m.mu.Unlock()
	m.poke()
}

func (m *mailbox) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// take returns and clears what is pending, jobs in the order they first
// changed.
func (m *mailbox) take() ([]jobView, []workerView) {
	m.mu.Lock()
	defer m.mu.Unlock()
	jobs := make([]jobView, 0, len(m.order))
	for _, id := range m.order {
		jobs = append(jobs, m.jobs[id])
	}
	clear(m.jobs)
	m.order = m.order[:0]
	ws := m.workers
	m.workers = nil
	return jobs, ws
}

// hub fans the fleet's events out to the browsers' mailboxes.
type hub struct {
	logger *slog.Logger
	max    int

	mu      sync.Mutex
	boxes   map[*mailbox]struct{}
	workers map[string]queue.WorkerStatus // by KV key
	// loaded says workers holds the bucket's contents: until then a new
	// stream gets no worker list, which would blank the page's.
	loaded bool
	done   chan struct{} // closed when run returns
}

func newHub(max int, logger *slog.Logger) *hub {
	return &hub{
		logger: logger, max: max,
		boxes: make(map[*mailbox]struct{}), workers: make(map[string]queue.WorkerStatus), done: make(chan struct{}),
	}
}

// add registers a mailbox for job ("" for everything).
func (h *hub) add(job string) (*mailbox, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.boxes) >= h.max {
		return nil, ErrTooManyStreams
	}
	m := &mailbox{job: job, wake: make(chan struct{}, 1), jobs: make(map[string]jobView)}
	h.boxes[m] = struct{}{}
	if job == "" && h.loaded {
		m.workers = h.workerViews()
	}
	return m, nil
}

func (h *hub) remove(m *mailbox) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.boxes, m)
}

// publishJob hands a job update to every mailbox.
func (h *hub) publishJob(v jobView) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for m := range h.boxes {
		m.put(v, false)
	}
}

// workerViews returns the current worker list; h.mu must be held.
func (h *hub) workerViews() []workerView {
	ws := make([]queue.WorkerStatus, 0, len(h.workers))
	for _, w := range h.workers {
		ws = append(ws, w)
	}
	return viewsOfWorkers(ws)
}

// publishWorkers hands the worker list to every mailbox; h.mu must be held.
func (h *hub) publishWorkers() {
	ws := h.workerViews()
	for m := range h.boxes {
		m.putWorkers(ws)
	}
}

// run feeds the hub until ctx is done, then closes h.done.
func (h *hub) run(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	defer close(h.done)
	sub, err := nc.Subscribe(queue.EventSubject("*"), func(msg *nats.Msg) {
		var ev queue.Event
		if queue.Decode(msg.Data, &ev) != nil {
			return
		}
		h.publishJob(viewOfEvent(&ev))
	})
	if err != nil {
		return fmt.Errorf("dashboard: subscribe to job events: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	h.watchWorkers(ctx, js)
	return nil
}

// watchWorkers follows the workers bucket until ctx is done. Entries that
// expire (a worker that stopped heartbeating) leave no mark in a watch, so
// workers not seen for the bucket's TTL are dropped by the clock.
func (h *hub) watchWorkers(ctx context.Context, js jetstream.JetStream) {
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		kv, err := js.KeyValue(ctx, queue.BucketWorkers)
		if err != nil { // not set up yet: the coordinator creates it
			if !wait(time.Second) {
				return
			}
			continue
		}
		ttl := queue.DefaultWorkerTTL
		if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
			ttl = st.TTL()
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			h.logger.WarnContext(ctx, "watch workers", "err", err)
			if !wait(time.Second) {
				return
			}
			continue
		}
		h.followWorkers(ctx, w, ttl)
		_ = w.Stop()
	}
}

// followWorkers applies the watch's updates until it ends or ctx is done.
func (h *hub) followWorkers(ctx context.Context, w jetstream.KeyWatcher, ttl time.Duration) {
	prune := time.NewTicker(ttl / 3)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			h.mu.Lock()
			changed := false
			for key, ws := range h.workers {
				if time.Since(ws.LastSeen) > ttl { // heartbeats carry the workers' real time
					delete(h.workers, key)
					changed = true
				}
			}
			if changed {
				h.publishWorkers()
			}
			h.mu.Unlock()
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the initial values are in
				h.mu.Lock()
				h.loaded = true
				h.publishWorkers()
				h.mu.Unlock()
				continue
			}
			h.mu.Lock()
			var ws queue.WorkerStatus
			switch {
			case e.Operation() != jetstream.KeyValuePut:
				delete(h.workers, e.Key())
			case queue.Decode(e.Value(), &ws) == nil:
				h.workers[e.Key()] = ws
			}
			h.publishWorkers()
			h.mu.Unlock()
		}
	}
}

// ssePing is how often an idle stream sends a comment, so proxies keep it
// open and a gone browser is noticed.
const ssePing = 15 * time.Second

// handleEvents serves /events: server-sent events "job" (a jobView) and
// "workers" (a list of workerView). ?job=ID limits the stream to one job.
// The stream starts with the current state, so a page loses nothing
// between being rendered and subscribing.
func (d *Dashboard) handleEvents(w http.ResponseWriter, r *http.Request) {
	job := r.URL.Query().Get("job")
	if job != "" && queue.CheckToken("job", job) != nil {
		http.Error(w, "bad job ID", http.StatusBadRequest)
		return
	}
	m, err := d.hub.add(job)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer d.hub.remove(m)

	// The current state, behind anything that already arrived (newer).
	ctx := r.Context()
	if job != "" {
		if j, err := d.api.job(ctx, job); err == nil {
			m.put(viewOfJob(j), true)
		}
	} else if jobs, err := d.api.jobs(ctx, recentJobs); err == nil {
		for i := range jobs {
			m.put(viewOfJob(&jobs[i]), true)
		}
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(p []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(d.redact.bytes(p)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 3000\n\n")) {
		return
	}
	ping := time.NewTicker(ssePing)
	defer ping.Stop()
	m.poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.hub.done:
			return
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		case <-m.wake:
			jobs, workers := m.take()
			var buf []byte
			for _, v := range jobs {
				buf = appendEvent(buf, "job", v)
			}
			if workers != nil {
				buf = appendEvent(buf, "workers", workers)
			}
			if len(buf) > 0 && !write(buf) {
				return
			}
		}
	}
}

// appendEvent appends one server-sent event with v as JSON data. JSON has
// no raw newlines, so the data is one line; its <, > and & are escaped.
func appendEvent(buf []byte, name string, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		return buf
	}
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	return append(buf, "\n\n"...)
}
