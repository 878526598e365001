package retry

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// DefaultMaxElapsed is Config.MaxElapsed's default, the compressor's
// default store timeout: long enough to ride out a restart of the object
// store or a network blip.
const DefaultMaxElapsed = 5 * time.Minute

// Delays between tries: the first is about firstDelay, each next one about
// twice as long, none longer than maxDelay, so a recovery is noticed within
// maxDelay.
const (
	firstDelay = 250 * time.Millisecond
	maxDelay   = 5 * time.Second
)

// ErrUnavailable means a call was retried until Config.MaxElapsed passed and
// the store still failed. The error is an *UnavailableError.
var ErrUnavailable = errors.New("retry: store unavailable")

// UnavailableError is the error of a call that was given up: the store
// failed in a way that may pass, for as long as it was allowed to. It wraps
// ErrUnavailable and the last try's error.
type UnavailableError struct {
	// Location names the store (store.Store.Location).
	Location string
	// Elapsed is how long the call was tried, from the first try to the
	// end of the last; Tries is how many tries were made.
	Elapsed time.Duration
	Tries   int
	// Limit is the Config.MaxElapsed that was reached.
	Limit time.Duration
	// Err is the last try's error.
	Err error
}

// Error says which store was unavailable for how long, and why:
// "repository s3://b/p unavailable for 5m0s (64 tries, store timeout
// 5m0s): put k: ...".
func (e *UnavailableError) Error() string {
	tries := "tries"
	if e.Tries == 1 {
		tries = "try"
	}
	return fmt.Sprintf("repository %s unavailable for %s (%d %s, store timeout %s): %v", e.Location, round(e.Elapsed), e.Tries, tries, e.Limit, e.Err)
}

// Unwrap returns ErrUnavailable and the last try's error, so errors.Is
// matches both.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Config configures a Store. The zero value retries for DefaultMaxElapsed
// on the real clock.
type Config struct {
	// MaxElapsed bounds how long one call is retried, from the start of
	// its first try: the wait before the last try is cut short to end
	// when MaxElapsed has passed, and a try that fails after that is not
	// retried, so a call takes at most MaxElapsed plus one try. Zero or
	// negative means DefaultMaxElapsed.
	MaxElapsed time.Duration
	// OnRetry, if set, is called after each failed try that will be
	// retried, before the wait: op is the method ("put", "get", "stat",
	// "peek", "list", "delete"), key the key or, for list, the prefix,
	// attempt the number of the try that failed (1 for the first), waited
	// the time since the first try began. It is for logs and metrics, and
	// is called concurrently when the Store is.
	OnRetry func(ctx context.Context, op, key string, attempt int, waited time.Duration, err error)
	// Now and Sleep are the clock; nil means time.Now and a timer. Sleep
	// waits for d or until ctx ends, returning ctx.Err() then. Tests inject
	// a fake clock so that they do not wait.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Store is a store.Store that retries the calls of the store it embeds
// while they fail in ways that may pass (see Transient), with exponential
// backoff, for up to Config.MaxElapsed or until the caller's context ends.
// Other failures are returned at once. It is safe for concurrent use.
type Store struct {
	store.Store
	cfg Config
}

var _ store.Store = (*Store)(nil)

// New returns st retrying as cfg says.
func New(st store.Store, cfg Config) *Store {
	if cfg.MaxElapsed <= 0 {
		cfg.MaxElapsed = DefaultMaxElapsed
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Store{Store: st, cfg: cfg}
}

// NotifyFunc is told of each failed try of one call that will be retried,
// before the wait: attempt is the number of the try that failed, waited the
// time since the first try began. A non-nil error stops the retrying: the
// call returns that error as it is.
type NotifyFunc func(attempt int, waited time.Duration, err error) error

// notifyKey is the context key of a NotifyFunc.
type notifyKey struct{}

// WithNotify returns a context that makes the calls of a Store made with it
// call fn between tries. A worker holding a queue message while the store
// is down uses it to keep the message (tell the server it is in progress)
// and to give up when the work was cancelled meanwhile. A function ctx
// already carries is called too, after fn (unless fn stops the retrying),
// so that every layer holding something while the call waits is told.
func WithNotify(ctx context.Context, fn NotifyFunc) context.Context {
	if outer, ok := ctx.Value(notifyKey{}).(NotifyFunc); ok {
		inner := fn
		fn = func(attempt int, waited time.Duration, err error) error {
			if nerr := inner(attempt, waited, err); nerr != nil {
				return nerr
			}
			return outer(attempt, waited, err)
		}
	}
	return context.WithValue(ctx, notifyKey{}, fn)
}

// Transient reports whether err may pass if the call is tried again: it
// wraps store.ErrUnavailable, which stores wrap around such failures (the
// store unreachable, timeouts, server errors, throttling), and none of
// store.ErrNotFound, store.ErrInvalidKey, store.ErrAccessDenied,
// store.ErrNoSpace or context.Canceled. Any other error is not transient.
// Transient cannot tell the caller's expired deadline from a timeout inside
// the store; Store checks the caller's context before it.
func Transient(err error) bool {
	for _, permanent := range []error{store.ErrNotFound, store.ErrInvalidKey, store.ErrAccessDenied, store.ErrNoSpace, context.Canceled} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	return errors.Is(err, store.ErrUnavailable)
}

// Put stores data under key, retrying: the embedded store's Put is atomic
// and idempotent, so a try that failed half way leaves nothing a second one
// could trip on.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	return s.retry(ctx, "put", key, func() error { return s.Store.Put(ctx, key, data) })
}

// Get returns the object under key, retrying.
func (s *Store) Get(ctx context.Context, key string) (data []byte, err error) {
	err = s.retry(ctx, "get", key, func() error {
		data, err = s.Store.Get(ctx, key)
		return err
	})
	return data, err
}

// Stat returns the size of the object under key, retrying.
func (s *Store) Stat(ctx context.Context, key string) (info store.Info, err error) {
	err = s.retry(ctx, "stat", key, func() error {
		info, err = s.Store.Stat(ctx, key)
		return err
	})
	return info, err
}

// Peek returns the first n bytes of the object under key and its size,
// retrying.
func (s *Store) Peek(ctx context.Context, key string, n int) (data []byte, info store.Info, err error) {
	err = s.retry(ctx, "peek", key, func() error {
		data, info, err = s.Store.Peek(ctx, key, n)
		return err
	})
	return data, info, err
}

// Delete removes the object under key, retrying.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.retry(ctx, "delete", key, func() error { return s.Store.Delete(ctx, key) })
}

// List yields the objects whose keys start with prefix. A listing that
// fails before it yielded anything is retried from the start; one that
// fails later is not (the consumer has seen part of it, and a listing
// cannot be resumed where it stopped), and its error is yielded as it is.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		err := s.retry(ctx, "list", prefix, func() error {
			yielded := false
			for info, err := range s.Store.List(ctx, prefix) {
				if err != nil {
					if yielded {
						return final{err}
					}
					return err
				}
				yielded = true
				if !yield(info, nil) {
					return nil // the consumer stopped
				}
			}
			return nil
		})
		if err != nil {
			yield(store.Info{}, err)
		}
	}
}

// final marks an error that must not be retried, whatever it wraps.
type final struct{ err error }

func (f final) Error() string { return f.err.Error() }

// Open opens a store with open, retrying while that fails in a way that
// may pass (the object store restarting when a worker first needs it), as
// cfg says, and returns the store retrying as cfg says. location names the
// store in the error of an open given up.
func Open(ctx context.Context, cfg Config, location string, open func(ctx context.Context) (store.Store, error)) (*Store, error) {
	r := New(nil, cfg)
	var st store.Store
	err := r.call(ctx, location, "open", "", func() (err error) {
		st, err = open(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.Store = st
	return r, nil
}

// retry calls try until it succeeds, fails in a way that does not pass, the
// caller's context ends, the notify function in ctx says to stop, or
// MaxElapsed passes.
func (s *Store) retry(ctx context.Context, op, key string, try func() error) error {
	return s.call(ctx, s.Location(), op, key, try)
}

// call is retry for the store at location.
func (s *Store) call(ctx context.Context, location, op, key string, try func() error) error {
	notify, _ := ctx.Value(notifyKey{}).(NotifyFunc)
	start := s.cfg.Now()
	for attempt := 1; ; attempt++ {
		err := try()
		if f, ok := err.(final); ok {
			return f.err
		}
		if err == nil || ctx.Err() != nil || !Transient(err) {
			return err
		}
		waited := s.cfg.Now().Sub(start)
		if waited >= s.cfg.MaxElapsed {
			return &UnavailableError{Location: location, Elapsed: waited, Tries: attempt, Limit: s.cfg.MaxElapsed, Err: err}
		}
		if notify != nil {
			if nerr := notify(attempt, waited, err); nerr != nil {
				return nerr
			}
		}
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(ctx, op, key, attempt, waited, err)
		}
		if cerr := s.cfg.Sleep(ctx, min(backoff(attempt), s.cfg.MaxElapsed-waited)); cerr != nil {
			return fmt.Errorf("%w while retrying on %s (%d tries in %s): %w", cerr, location, attempt, round(waited), err)
		}
	}
}

// backoff returns the wait after the given failed try: firstDelay, doubling
// with each try up to maxDelay, less up to half at random, so that workers
// that failed together do not all come back at once.
func backoff(attempt int) time.Duration {
	d := min(maxDelay, firstDelay<<min(attempt-1, 16))
	return d - rand.N(d/2+1)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// round makes a duration short enough to read in an error: whole seconds
// from 10s on, else milliseconds.
func round(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
