package dispatch_test

import (
	"context"
	"errors"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/dispatch"
)

// harness runs dispatch.Run with a clock the test moves and ticks the test
// sends; every publish is reported on sent.
type harness struct {
	t           *testing.T
	mu          sync.Mutex
	now         time.Time
	ticks       chan time.Time
	completions chan dispatch.Completion
	sent        chan sentItem
	failNext    chan error // errors the next publishes return
	result      chan error
	cancel      context.CancelCauseFunc
}

type sentItem struct {
	unit    dispatch.Unit
	attempt int
}

func units(op string, n int) iter.Seq[dispatch.Unit] {
	return func(yield func(dispatch.Unit) bool) {
		for i := range n {
			if !yield(dispatch.Unit{Op: op, Index: i}) {
				return
			}
		}
	}
}

var errTransient = errors.New("no responders")

func start(t *testing.T, window int, work iter.Seq[dispatch.Unit], done func(dispatch.Unit) bool, tweaks ...func(*dispatch.Config)) *harness {
	t.Helper()
	return startFailing(t, nil, window, work, done, tweaks...)
}

// startFailing is start with the first publishes failing with failFirst,
// queued before Run starts, so that they are the first it sees.
func startFailing(t *testing.T, failFirst []error, window int, work iter.Seq[dispatch.Unit], done func(dispatch.Unit) bool, tweaks ...func(*dispatch.Config)) *harness {
	t.Helper()
	h := &harness{
		t: t, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		ticks: make(chan time.Time), completions: make(chan dispatch.Completion),
		sent: make(chan sentItem, 1000), failNext: make(chan error, 10), result: make(chan error, 1),
	}
	cfg := dispatch.Config{
		Window: window, Timeout: time.Minute, MaxAttempts: 3, Stall: 10 * time.Minute, Ticks: h.ticks,
		Now:       func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now },
		Transient: func(err error) bool { return errors.Is(err, errTransient) },
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	for _, err := range failFirst {
		h.failNext <- err
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	h.cancel = cancel
	publish := func(_ context.Context, u dispatch.Unit, attempt int) error {
		select {
		case err := <-h.failNext:
			return err
		default:
		}
		h.sent <- sentItem{u, attempt}
		return nil
	}
	go func() { h.result <- dispatch.Run(ctx, cfg, work, done, h.completions, publish) }()
	return h
}

// advance moves the clock and ticks.
func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	now := h.now
	h.mu.Unlock()
	select {
	case h.ticks <- now:
	case err := <-h.result:
		h.result <- err
	}
}

// expectSent waits for exactly the publishes in want, in any order, and
// checks nothing else was sent.
func (h *harness) expectSent(want ...sentItem) {
	h.t.Helper()
	got := make(map[sentItem]int)
	for range want {
		select {
		case s := <-h.sent:
			got[s]++
		case <-time.After(10 * time.Second):
			h.t.Fatalf("sent %v, want %v", got, want)
		}
	}
	for _, w := range want {
		if got[w] == 0 {
			h.t.Fatalf("sent %v, want %v", got, want)
		}
		got[w]--
	}
	h.expectNothingSent()
}

// expectNothingSent checks that Run has published nothing more. Run handles
// ticks and completions in one loop, so once a tick at the same time (which
// changes nothing) is taken, whatever it did before has been published.
func (h *harness) expectNothingSent() {
	h.t.Helper()
	h.advance(0)
	h.advance(0)
	select {
	case s := <-h.sent:
		h.t.Fatalf("unexpected publish %v", s)
	default:
	}
}

func (h *harness) complete(u dispatch.Unit) {
	h.completions <- dispatch.Completion{Unit: u}
}

func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.result:
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return")
		return nil
	}
}

func u(i int) dispatch.Unit { return dispatch.Unit{Op: "read", Index: i} }

func TestWindow(t *testing.T) {
	t.Parallel()
	h := start(t, 2, units("read", 5), nil)
	h.expectSent(sentItem{u(0), 0}, sentItem{u(1), 0})
	h.complete(u(1))
	h.expectSent(sentItem{u(2), 0})
	h.complete(u(0))
	h.complete(u(2))
	h.expectSent(sentItem{u(3), 0}, sentItem{u(4), 0})
	h.complete(u(4))
	h.complete(u(3))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestSkipsDone(t *testing.T) {
	t.Parallel()
	h := start(t, 10, units("read", 4), func(x dispatch.Unit) bool { return x.Index%2 == 0 })
	h.expectSent(sentItem{u(1), 0}, sentItem{u(3), 0})
	h.complete(u(1))
	h.complete(u(3))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestReissue(t *testing.T) {
	t.Parallel()
	h := start(t, 10, units("read", 2), nil)
	h.expectSent(sentItem{u(0), 0}, sentItem{u(1), 0})
	h.advance(30 * time.Second)
	h.expectNothingSent()
	h.complete(u(1))
	h.advance(31 * time.Second) // u(0) has waited 61 s
	h.expectSent(sentItem{u(0), 1})
	h.advance(61 * time.Second)
	h.expectSent(sentItem{u(0), 2})
	h.complete(u(0))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

// TestAttemptsRunOut: the last attempt of a unit fails the step only when
// nothing else completed for as long as an attempt takes; a busy job tries
// again.
func TestAttemptsRunOut(t *testing.T) {
	t.Parallel()
	h := start(t, 10, units("read", 3), nil)
	h.expectSent(sentItem{u(0), 0}, sentItem{u(1), 0}, sentItem{u(2), 0})
	h.advance(61 * time.Second)
	h.expectSent(sentItem{u(0), 1}, sentItem{u(1), 1}, sentItem{u(2), 1})
	h.advance(61 * time.Second)
	h.expectSent(sentItem{u(0), 2}, sentItem{u(1), 2}, sentItem{u(2), 2})
	h.advance(30 * time.Second)
	h.complete(u(2)) // something completes: the others may try again
	h.advance(31 * time.Second)
	h.expectSent(sentItem{u(0), 3}, sentItem{u(1), 3})
	h.advance(61 * time.Second) // nothing completed for an attempt's time
	err := h.wait()
	if !errors.Is(err, dispatch.ErrNoCompletion) {
		t.Fatalf("Run = %v, want ErrNoCompletion", err)
	}
}

// TestStall: when nothing completes for Stall, the step fails saying so,
// however many attempts its units have left.
func TestStall(t *testing.T) {
	t.Parallel()
	h := start(t, 10, units("read", 2), nil, func(c *dispatch.Config) { c.MaxAttempts = 100 })
	h.expectSent(sentItem{u(0), 0}, sentItem{u(1), 0})
	for i := range 9 {
		h.advance(61 * time.Second)
		h.expectSent(sentItem{u(0), i + 1}, sentItem{u(1), i + 1})
	}
	h.advance(61 * time.Second)
	err := h.wait()
	var se *dispatch.StallError
	if !errors.Is(err, dispatch.ErrStalled) || !errors.As(err, &se) || se.Outstanding != 2 {
		t.Fatalf("Run = %v, want a stall with 2 items outstanding", err)
	}
}

// TestAlive: word from the current attempt of a long unit restarts its
// timer; it is not re-issued while word keeps coming.
func TestAlive(t *testing.T) {
	t.Parallel()
	scan := dispatch.Unit{Op: "scan"}
	h := start(t, 1, func(yield func(dispatch.Unit) bool) { yield(scan) }, nil)
	h.expectSent(sentItem{scan, 0})
	for range 5 {
		h.advance(50 * time.Second)
		h.completions <- dispatch.Completion{Unit: scan, Alive: true, Attempt: 0}
	}
	h.advance(50 * time.Second)
	h.expectNothingSent()
	h.complete(scan)
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestFailedUnit(t *testing.T) {
	t.Parallel()
	h := start(t, 10, units("read", 2), nil)
	h.expectSent(sentItem{u(0), 0}, sentItem{u(1), 0})
	bad := errors.New("chunk 1 is corrupt")
	h.completions <- dispatch.Completion{Unit: u(1), Err: bad}
	if err := h.wait(); !errors.Is(err, bad) {
		t.Fatalf("Run = %v, want the unit's error", err)
	}
}

// TestPublishErrors: a transient publish error is retried at the next tick
// without spending an attempt; any other fails the step.
func TestPublishErrors(t *testing.T) {
	t.Parallel()
	h := startFailing(t, []error{errTransient}, 1, units("read", 1), nil)
	h.advance(time.Second)
	h.expectSent(sentItem{u(0), 0})
	h.complete(u(0))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}

	h = startFailing(t, []error{errors.New("permission denied")}, 1, units("read", 1), nil)
	if err := h.wait(); err == nil {
		t.Fatal("Run succeeded though publishing failed for good")
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	h := start(t, 1, units("read", 3), nil)
	h.expectSent(sentItem{u(0), 0})
	why := errors.New("cancelled by request")
	h.cancel(why)
	if err := h.wait(); !errors.Is(err, why) {
		t.Fatalf("Run = %v, want the cancellation's cause", err)
	}
}
