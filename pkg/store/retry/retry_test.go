package retry_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
)

// Errors as the stores return them.
var (
	errDown     = fmt.Errorf("%w: dial tcp 127.0.0.1:9000: connect: connection refused", store.ErrUnavailable)
	errSlowDown = fmt.Errorf("%w: SlowDown: please reduce your request rate", store.ErrUnavailable)
	errMissing  = fmt.Errorf("%w: NoSuchKey", store.ErrNotFound)
	errDenied   = fmt.Errorf("%w: InvalidAccessKeyId", store.ErrAccessDenied)
	errFull     = fmt.Errorf("%w: XMinioStorageFull", store.ErrNoSpace)
	errBadKey   = fmt.Errorf("%w %q", store.ErrInvalidKey, "../k")
	errOther    = errors.New("something no store classified")
)

func TestTransient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unavailable", store.ErrUnavailable, true},
		{"connection refused", errDown, true},
		{"throttled", errSlowDown, true},
		{"wrapped twice", fmt.Errorf("put chunks/ab: %w", errDown), true},
		{"inner timeout", fmt.Errorf("%w: %w", store.ErrUnavailable, context.DeadlineExceeded), true},
		{"not found", errMissing, false},
		{"access denied", errDenied, false},
		{"no space", errFull, false},
		{"invalid key", errBadKey, false},
		{"not found and unavailable", fmt.Errorf("%w: %w", store.ErrNotFound, errDown), false},
		{"no space and unavailable", fmt.Errorf("%w: %w", errDown, store.ErrNoSpace), false},
		{"cancelled", context.Canceled, false},
		{"cancelled and unavailable", fmt.Errorf("%w: %w", store.ErrUnavailable, context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		{"unclassified", errOther, false},
		{"given up", &retry.UnavailableError{Location: "/repo", Err: errOther}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retry.Transient(tt.err); got != tt.want {
				t.Errorf("Transient(%v) = %t, want %t", tt.err, got, tt.want)
			}
		})
	}
}

// fakeStore is a store whose calls fail with the errors in fails, one per
// call, then succeed; errForever, once reached, fails every call. Its
// listing yields listing or, when the call fails with fails[i], the first
// failAfter[i] entries (none if failAfter is shorter) and then the error.
type fakeStore struct {
	fails     []error
	failAfter []int
	listing   []store.Info

	mu    sync.Mutex
	calls int
}

// errForever makes a fakeStore fail with it on every call from then on.
var errForever = fmt.Errorf("%w: down for good", store.ErrUnavailable)

var _ store.Store = (*fakeStore)(nil)

// next returns how many entries the next call's listing yields and the
// call's error.
func (f *fakeStore) next() (yield int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { f.calls++ }()
	if f.calls >= len(f.fails) {
		if len(f.fails) > 0 && f.fails[len(f.fails)-1] == errForever {
			return 0, errForever
		}
		return len(f.listing), nil
	}
	if f.calls < len(f.failAfter) {
		yield = f.failAfter[f.calls]
	}
	return yield, f.fails[f.calls]
}

func (f *fakeStore) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeStore) Put(ctx context.Context, key string, data []byte) error {
	_, err := f.next()
	return err
}

func (f *fakeStore) Get(ctx context.Context, key string) ([]byte, error) {
	if _, err := f.next(); err != nil {
		return nil, err
	}
	return []byte("data of " + key), nil
}

func (f *fakeStore) Stat(ctx context.Context, key string) (store.Info, error) {
	if _, err := f.next(); err != nil {
		return store.Info{}, err
	}
	return store.Info{Key: key, Size: 42}, nil
}

func (f *fakeStore) Peek(ctx context.Context, key string, n int) ([]byte, store.Info, error) {
	if _, err := f.next(); err != nil {
		return nil, store.Info{}, err
	}
	return []byte("data")[:n], store.Info{Key: key, Size: 42}, nil
}

func (f *fakeStore) Delete(ctx context.Context, key string) error {
	_, err := f.next()
	return err
}

func (f *fakeStore) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		n, err := f.next()
		for _, info := range f.listing[:n] {
			if !yield(info, nil) {
				return
			}
		}
		if err != nil {
			yield(store.Info{}, err)
		}
	}
}

func (f *fakeStore) Location() string { return "fake://repo" }

// fakeClock is a clock whose Sleep returns at once, moving the time on by
// the delay asked for, and records the delays.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
	// onSleep, if set, runs at the start of each Sleep.
	onSleep func(ctx context.Context)
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.onSleep != nil {
		c.onSleep(ctx)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// Elapsed returns the time slept in all.
func (c *fakeClock) Elapsed() time.Duration {
	var sum time.Duration
	for _, d := range c.Sleeps() {
		sum += d
	}
	return sum
}

func config(c *fakeClock, maxElapsed time.Duration) retry.Config {
	return retry.Config{MaxElapsed: maxElapsed, Now: c.Now, Sleep: c.Sleep}
}

// ops calls each method of s and checks what a successful call returns.
var ops = []struct {
	name string
	call func(ctx context.Context, s store.Store) error
}{
	{"put", func(ctx context.Context, s store.Store) error { return s.Put(ctx, "k", []byte("v")) }},
	{"get", func(ctx context.Context, s store.Store) error {
		data, err := s.Get(ctx, "k")
		if err == nil && string(data) != "data of k" {
			return fmt.Errorf("Get returned %q", data)
		}
		return err
	}},
	{"stat", func(ctx context.Context, s store.Store) error {
		info, err := s.Stat(ctx, "k")
		if err == nil && info != (store.Info{Key: "k", Size: 42}) {
			return fmt.Errorf("Stat returned %+v", info)
		}
		return err
	}},
	{"peek", func(ctx context.Context, s store.Store) error {
		data, info, err := s.Peek(ctx, "k", 2)
		if err == nil && (string(data) != "da" || info != (store.Info{Key: "k", Size: 42})) {
			return fmt.Errorf("Peek returned %q, %+v", data, info)
		}
		return err
	}},
	{"delete", func(ctx context.Context, s store.Store) error { return s.Delete(ctx, "k") }},
	{"list", func(ctx context.Context, s store.Store) error {
		var got []store.Info
		for info, err := range s.List(ctx, "") {
			if err != nil {
				return err
			}
			got = append(got, info)
		}
		if len(got) != 1 || got[0].Key != "k" {
			return fmt.Errorf("List yielded %v", got)
		}
		return nil
	}},
}

func TestRetry(t *testing.T) {
	t.Parallel()
	const maxElapsed = time.Minute
	tests := []struct {
		name      string
		fails     []error
		wantErr   error // nil: the call succeeds
		wantCalls int
	}{
		{"no failure", nil, nil, 1},
		{"one outage", []error{errDown}, nil, 2},
		{"several outages", []error{errDown, errSlowDown, errDown, errDown}, nil, 5},
		{"not found", []error{errMissing}, store.ErrNotFound, 1},
		{"access denied", []error{errDenied}, store.ErrAccessDenied, 1},
		{"no space", []error{errFull}, store.ErrNoSpace, 1},
		{"invalid key", []error{errBadKey}, store.ErrInvalidKey, 1},
		{"unclassified", []error{errOther}, errOther, 1},
		{"not found after an outage", []error{errDown, errMissing}, store.ErrNotFound, 2},
		// 250ms, 500ms, 1s, 2s, 4s, then 5s each: at least 13 waits to
		// reach a minute at full length, at most 25 at half length.
		{"down for good", []error{errForever}, retry.ErrUnavailable, -1},
	}
	for _, op := range ops {
		for _, tt := range tests {
			t.Run(op.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				fake := &fakeStore{fails: tt.fails, listing: []store.Info{{Key: "k", Size: 1}}}
				clock := newClock()
				s := retry.New(fake, config(clock, maxElapsed))
				err := op.call(t.Context(), s)
				if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				calls := fake.Calls()
				if tt.wantCalls >= 0 && calls != tt.wantCalls {
					t.Errorf("store called %d times, want %d", calls, tt.wantCalls)
				}
				if got := len(clock.Sleeps()); got != calls-1 {
					t.Errorf("%d waits for %d calls, want one between each two", got, calls)
				}
				if tt.wantErr != retry.ErrUnavailable {
					return
				}
				if calls < 14 || calls > 26 {
					t.Errorf("store called %d times in %s, want 14 to 26", calls, maxElapsed)
				}
				if got := clock.Elapsed(); got != maxElapsed {
					t.Errorf("waited %s in all, want MaxElapsed %s", got, maxElapsed)
				}
				var unavailable *retry.UnavailableError
				if !errors.As(err, &unavailable) {
					t.Fatalf("error %v (%T) is not an *UnavailableError", err, err)
				}
				want := retry.UnavailableError{Location: "fake://repo", Elapsed: maxElapsed, Tries: calls, Limit: maxElapsed, Err: errForever}
				if *unavailable != want {
					t.Errorf("error = %+v, want %+v", *unavailable, want)
				}
				if !errors.Is(err, errForever) || !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("error %v does not wrap the last try's error", err)
				}
				wantText := fmt.Sprintf("repository fake://repo unavailable for 1m0s (%d tries, store timeout 1m0s): %v", calls, errForever)
				if err.Error() != wantText {
					t.Errorf("error text = %q, want %q", err, wantText)
				}
			})
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	clock := newClock()
	s := retry.New(&fakeStore{fails: []error{errForever}}, config(clock, time.Hour))
	err := s.Put(t.Context(), "k", nil)
	if !errors.Is(err, retry.ErrUnavailable) {
		t.Fatalf("Put error = %v, want %v", err, retry.ErrUnavailable)
	}
	sleeps := clock.Sleeps()
	if len(sleeps) < 20 {
		t.Fatalf("%d waits in an hour, want many more", len(sleeps))
	}
	capped := make(map[time.Duration]bool)
	for i, d := range sleeps[:len(sleeps)-1] { // the last is cut short at the limit
		nominal := min(5*time.Second, 250*time.Millisecond<<min(i, 16))
		if d < nominal/2 || d > nominal {
			t.Errorf("wait %d = %s, want between %s and %s", i+1, d, nominal/2, nominal)
		}
		if nominal == 5*time.Second {
			capped[d] = true
		}
	}
	if len(capped) < 2 {
		t.Errorf("waits at the cap are all %v: no jitter", capped)
	}
}

func TestDefaultMaxElapsed(t *testing.T) {
	t.Parallel()
	for _, maxElapsed := range []time.Duration{0, -time.Second} {
		clock := newClock()
		s := retry.New(&fakeStore{fails: []error{errForever}}, config(clock, maxElapsed))
		if err := s.Delete(t.Context(), "k"); !errors.Is(err, retry.ErrUnavailable) {
			t.Fatalf("Delete error = %v, want %v", err, retry.ErrUnavailable)
		}
		if got := clock.Elapsed(); got != retry.DefaultMaxElapsed {
			t.Errorf("MaxElapsed %s: waited %s, want DefaultMaxElapsed %s", maxElapsed, got, retry.DefaultMaxElapsed)
		}
	}
}

// TestSlowTries checks that the time a try takes counts against MaxElapsed:
// a try that ends past the limit is not retried.
func TestSlowTries(t *testing.T) {
	t.Parallel()
	clock := newClock()
	fake := &fakeStore{fails: []error{errForever}}
	slow := &slowStore{fakeStore: fake, clock: clock, took: 4 * time.Second}
	s := retry.New(slow, config(clock, 10*time.Second))
	err := s.Put(t.Context(), "k", nil)
	var unavailable *retry.UnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("Put error = %v, want an *UnavailableError", err)
	}
	// Tries end at 4s, 8.125s to 8.25s and, after a wait of at least
	// 250ms, 12.375s or later: past the limit.
	if want := 3*4*time.Second + clock.Elapsed(); unavailable.Tries != 3 || unavailable.Elapsed != want {
		t.Errorf("gave up after %d tries in %s, want 3 in %s", unavailable.Tries, unavailable.Elapsed, want)
	}
}

// slowStore is a fakeStore whose Put takes time on the fake clock.
type slowStore struct {
	*fakeStore
	clock *fakeClock
	took  time.Duration
}

func (s *slowStore) Put(ctx context.Context, key string, data []byte) error {
	s.clock.mu.Lock()
	s.clock.now = s.clock.now.Add(s.took)
	s.clock.mu.Unlock()
	return s.fakeStore.Put(ctx, key, data)
}

func TestCallerContext(t *testing.T) {
	t.Parallel()
	t.Run("cancelled while waiting", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		clock := newClock()
		waits := 0
		clock.onSleep = func(context.Context) {
			if waits++; waits == 3 {
				cancel()
			}
		}
		fake := &fakeStore{fails: []error{errForever}}
		err := retry.New(fake, config(clock, time.Hour)).Put(ctx, "k", nil)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errForever) {
			t.Errorf("Put error = %v, want one wrapping %v and the last try's error", err, context.Canceled)
		}
		if errors.Is(err, retry.ErrUnavailable) {
			t.Errorf("Put error = %v: the limit did not pass, yet it wraps %v", err, retry.ErrUnavailable)
		}
		if !strings.Contains(err.Error(), "fake://repo") {
			t.Errorf("Put error %q does not name the store", err)
		}
		if got := fake.Calls(); got != 3 {
			t.Errorf("store called %d times, want 3", got)
		}
	})
	t.Run("ended before a try", func(t *testing.T) {
		t.Parallel()
		for _, cause := range []error{context.Canceled, context.DeadlineExceeded} {
			ctx, cancel := context.WithCancelCause(t.Context())
			cancel(cause)
			// An error of a try made with an ended context is the
			// caller's, even if the store calls it an outage.
			fake := &fakeStore{fails: []error{errForever}}
			clock := newClock()
			_, err := retry.New(fake, config(clock, time.Hour)).Get(ctx, "k")
			if err != errForever {
				t.Errorf("%v: Get error = %v, want the store's error as it is", cause, err)
			}
			if got := fake.Calls(); got != 1 {
				t.Errorf("%v: store called %d times, want once", cause, got)
			}
		}
	})
}

func TestHooks(t *testing.T) {
	t.Parallel()
	type event struct {
		attempt int
		waited  time.Duration
		err     error
	}
	t.Run("every failure reported", func(t *testing.T) {
		t.Parallel()
		var notified, retried []event
		clock := newClock()
		cfg := config(clock, time.Hour)
		cfg.OnRetry = func(ctx context.Context, op, key string, attempt int, waited time.Duration, err error) {
			if op != "stat" || key != "chunks/k" {
				t.Errorf("OnRetry(%q, %q), want (stat, chunks/k)", op, key)
			}
			retried = append(retried, event{attempt, waited, err})
		}
		ctx := retry.WithNotify(t.Context(), func(attempt int, waited time.Duration, err error) error {
			notified = append(notified, event{attempt, waited, err})
			return nil
		})
		fails := []error{errDown, errSlowDown, errDown}
		s := retry.New(&fakeStore{fails: fails}, cfg)
		if _, err := s.Stat(ctx, "chunks/k"); err != nil {
			t.Fatal(err)
		}
		sleeps := clock.Sleeps()
		var want []event
		var waited time.Duration
		for i, err := range fails {
			want = append(want, event{i + 1, waited, err})
			waited += sleeps[i]
		}
		for name, got := range map[string][]event{"notify": notified, "OnRetry": retried} {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s saw %v, want %v", name, got, want)
			}
		}
		// Calls without the notifying context, and successful ones, notify
		// nothing.
		notified = nil
		if _, err := s.Stat(t.Context(), "chunks/k"); err != nil {
			t.Fatal(err)
		}
		if _, err := retry.New(&fakeStore{fails: fails}, config(newClock(), time.Hour)).Stat(t.Context(), "chunks/k"); err != nil {
			t.Fatal(err)
		}
		if len(notified) != 0 {
			t.Errorf("notify saw %v for calls without it", notified)
		}
	})
	t.Run("notify stops", func(t *testing.T) {
		t.Parallel()
		errJobEnded := errors.New("the job has ended")
		clock := newClock()
		fake := &fakeStore{fails: []error{errForever}}
		ctx := retry.WithNotify(t.Context(), func(attempt int, waited time.Duration, err error) error {
			if attempt == 4 {
				return errJobEnded
			}
			return nil
		})
		err := retry.New(fake, config(clock, time.Hour)).Put(ctx, "k", nil)
		if err != errJobEnded {
			t.Errorf("Put error = %v, want the notify func's error as it is", err)
		}
		if got := fake.Calls(); got != 4 {
			t.Errorf("store called %d times, want 4", got)
		}
		if got := len(clock.Sleeps()); got != 3 {
			t.Errorf("%d waits, want 3: none after notify said stop", got)
		}
	})
	t.Run("nested notifies are all called, inner first", func(t *testing.T) {
		t.Parallel()
		clock := newClock()
		var order []string
		ctx := retry.WithNotify(t.Context(), func(int, time.Duration, error) error { order = append(order, "outer"); return nil })
		ctx = retry.WithNotify(ctx, func(int, time.Duration, error) error { order = append(order, "inner"); return nil })
		fake := &fakeStore{fails: []error{errDown}}
		if err := retry.New(fake, config(clock, time.Minute)).Put(ctx, "k", nil); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if got := strings.Join(order, ","); got != "inner,outer" {
			t.Errorf("notified %q, want inner,outer", got)
		}
	})
	t.Run("an inner stop skips the outer notify", func(t *testing.T) {
		t.Parallel()
		clock := newClock()
		outer := 0
		stop := errors.New("stop")
		ctx := retry.WithNotify(t.Context(), func(int, time.Duration, error) error { outer++; return nil })
		ctx = retry.WithNotify(ctx, func(int, time.Duration, error) error { return stop })
		fake := &fakeStore{fails: []error{errDown}}
		if err := retry.New(fake, config(clock, time.Minute)).Put(ctx, "k", nil); !errors.Is(err, stop) || outer != 0 {
			t.Errorf("Put = %v with the outer notify called %d times; want %v and 0", err, outer, stop)
		}
	})
	t.Run("no notify when giving up", func(t *testing.T) {
		t.Parallel()
		clock := newClock()
		notified := 0
		ctx := retry.WithNotify(t.Context(), func(int, time.Duration, error) error { notified++; return nil })
		fake := &fakeStore{fails: []error{errForever}}
		err := retry.New(fake, config(clock, 10*time.Second)).Put(ctx, "k", nil)
		if !errors.Is(err, retry.ErrUnavailable) {
			t.Fatalf("Put error = %v, want %v", err, retry.ErrUnavailable)
		}
		if calls := fake.Calls(); notified != calls-1 {
			t.Errorf("notified %d times for %d tries, want once before each retry", notified, calls)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	listing := []store.Info{{Key: "a", Size: 1}, {Key: "b", Size: 2}, {Key: "c", Size: 3}}
	tests := []struct {
		name      string
		fails     []error
		failAfter []int
		stopAfter int // the consumer breaks after this many entries; 0 never
		wantKeys  string
		wantErr   error
		wantCalls int
	}{
		{"no failure", nil, nil, 0, "abc", nil, 1},
		{"fails at once", []error{errDown, errDown}, nil, 0, "abc", nil, 3},
		{"fails after yielding", []error{errDown}, []int{2}, 0, "ab", errDown, 1},
		{"fails at once, then after yielding", []error{errDown, errSlowDown}, []int{0, 1}, 0, "a", errSlowDown, 2},
		{"invalid prefix", []error{errBadKey}, nil, 0, "", store.ErrInvalidKey, 1},
		{"consumer stops", nil, nil, 1, "a", nil, 1},
		{"consumer stops after a retry", []error{errDown}, nil, 2, "ab", nil, 2},
		{"down for good", []error{errForever}, nil, 0, "", retry.ErrUnavailable, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeStore{fails: tt.fails, failAfter: tt.failAfter, listing: listing}
			s := retry.New(fake, config(newClock(), time.Minute))
			var keys string
			var errs []error
			for info, err := range s.List(t.Context(), "") {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				keys += info.Key
				if len(keys) == tt.stopAfter {
					break
				}
			}
			if keys != tt.wantKeys {
				t.Errorf("List yielded %q, want %q", keys, tt.wantKeys)
			}
			switch {
			case tt.wantErr == nil && len(errs) > 0:
				t.Errorf("List yielded errors %v, want none", errs)
			case tt.wantErr != nil && (len(errs) != 1 || !errors.Is(errs[0], tt.wantErr)):
				t.Errorf("List yielded errors %v, want one: %v", errs, tt.wantErr)
			}
			if got := fake.Calls(); tt.wantCalls >= 0 && got != tt.wantCalls {
				t.Errorf("store listed %d times, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fails     []error // one per try of open, then it succeeds
		wantErr   error   // nil: opened
		wantTries int
	}{
		{"at once", nil, nil, 1},
		{"after the store comes back", []error{errDown, errSlowDown}, nil, 3},
		{"denied: not retried", []error{errDenied}, store.ErrAccessDenied, 1},
		{"down for longer than allowed", []error{errForever}, retry.ErrUnavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			tries := 0
			st, err := retry.Open(t.Context(), config(clock, 10*time.Second), "s3://b/p", func(context.Context) (store.Store, error) {
				tries++
				if i := tries - 1; i < len(tt.fails) || len(tt.fails) > 0 && tt.fails[len(tt.fails)-1] == errForever {
					return nil, tt.fails[min(i, len(tt.fails)-1)]
				}
				return &fakeStore{}, nil
			})
			if tt.wantErr == nil {
				if err != nil || st == nil {
					t.Fatalf("Open = %v, %v; want a store", st, err)
				}
				// The store it returns retries too.
				if _, err := st.Get(t.Context(), "k"); err != nil {
					t.Errorf("Get on the opened store: %v", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
			if tt.wantTries > 0 && tries != tt.wantTries {
				t.Errorf("open tried %d times, want %d", tries, tt.wantTries)
			}
			if errors.Is(err, retry.ErrUnavailable) && !strings.Contains(err.Error(), "s3://b/p") {
				t.Errorf("Open error %q does not name the store", err)
			}
		})
	}
}
