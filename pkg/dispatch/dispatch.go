// Package dispatch hands out the work items of one step of a job and sees
// each completed: it keeps at most a window of them outstanding, re-issues
// one whose completion does not come in time, and fails the step when an
// item fails, when one runs out of attempts while nothing else completes,
// or when nothing at all completes for a long while.
//
// It knows nothing of NATS: publishing an item and the completions coming
// back are the caller's (a function and a channel), and time comes from an
// injected clock and ticker, so every rule is tested without a server or a
// wait.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"
)

// Unit identifies one work item of a job: its operation, the restore
// target it is for (0 for a backup), and its index among the operation's
// items.
type Unit struct {
	Op     string
	Target int
	Index  int
}

func (u Unit) String() string {
	if u.Target != 0 {
		return fmt.Sprintf("%s %d of target %d", u.Op, u.Index, u.Target)
	}
	return fmt.Sprintf("%s %d", u.Op, u.Index)
}

// Completion is news of a unit: done, or failed (Err), or, with Alive,
// still being worked on (attempt Attempt of it sent word; its re-issue
// timer starts over).
type Completion struct {
	Unit    Unit
	Err     error
	Alive   bool
	Attempt int
}

// Publish sends the work item of u, sent attempt times before. An error
// that Config.Transient calls transient leaves u to be sent again at the
// next tick, without spending an attempt; any other fails the step.
type Publish func(ctx context.Context, u Unit, attempt int) error

// Config tunes a Dispatcher. Window, Timeout, MaxAttempts, Stall and Ticks
// are required.
type Config struct {
	// Window is how many units may be outstanding at once.
	Window int
	// Timeout is how long a unit may go without completing (or sending
	// word) before it is sent again.
	Timeout time.Duration
	// MaxAttempts is how often a unit is sent before, if nothing else
	// completes either, the step fails.
	MaxAttempts int
	// Stall fails the step when nothing completes for this long.
	Stall time.Duration
	// Ticks paces the checks for timeouts and stalls (time.Ticker.C).
	Ticks <-chan time.Time
	// Now tells the time; nil means time.Now.
	Now func() time.Time
	// Transient reports publish errors worth sending again; nil means
	// none is.
	Transient func(error) bool
	// OnTick, if set, is called at each tick (progress reports).
	OnTick func()
	// Logger receives re-issues and publish retries; nil discards.
	Logger *slog.Logger
}

// ErrStalled is wrapped by the error of a step in which nothing completed
// for Config.Stall.
var ErrStalled = errors.New("stalled")

// ErrNoCompletion is wrapped when a unit ran out of attempts.
var ErrNoCompletion = errors.New("no completion")

// StallError is the error of a stalled step.
type StallError struct {
	After       time.Duration
	Outstanding int
}

func (e *StallError) Error() string {
	return fmt.Sprintf("stalled: no progress for %s with %d work items outstanding", e.After.Round(time.Second), e.Outstanding)
}

// Is makes errors.Is(err, ErrStalled) true.
func (e *StallError) Is(target error) bool { return target == ErrStalled }

type flight struct {
	published time.Time
	attempt   int
	unsent    bool // the last publish failed transiently: send again at the next tick
}

// Run publishes units in order, keeping at most Window outstanding, and
// returns nil once each has completed. It skips the units done reports
// done already (a resumed job). Completions come on completions; a unit's
// Err fails the step with that error. It returns ctx's cause when ctx ends.
func Run(ctx context.Context, cfg Config, units iter.Seq[Unit], done func(Unit) bool, completions <-chan Completion, publish Publish) error {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	next, stop := iter.Pull(units)
	defer stop()
	outstanding := make(map[Unit]*flight)
	more := true
	send := func(u Unit, attempt int) error {
		f := &flight{published: now(), attempt: attempt}
		if err := publish(ctx, u, attempt); err != nil {
			if ctx.Err() != nil || cfg.Transient == nil || !cfg.Transient(err) {
				return fmt.Errorf("publish %s: %w", u, err)
			}
			logger.WarnContext(ctx, "publish failed; retrying", "op", u.Op, "index", u.Index, "err", err)
			f.unsent = true
		}
		outstanding[u] = f
		return nil
	}
	fill := func() error {
		for more && len(outstanding) < cfg.Window {
			u, ok := next()
			if !ok {
				more = false
				break
			}
			if done != nil && done(u) {
				continue
			}
			if err := send(u, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if err := fill(); err != nil {
		return err
	}
	lastDone := now()
	for more || len(outstanding) > 0 {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case c := <-completions:
			if c.Err != nil {
				return c.Err
			}
			lastDone = now()
			f := outstanding[c.Unit]
			if c.Alive {
				// A unit that reports as it goes (a large tree's scan) is
				// alive as long as word comes, however long it takes.
				if f != nil && f.attempt == c.Attempt {
					f.published = lastDone
				}
				continue
			}
			delete(outstanding, c.Unit)
			if err := fill(); err != nil {
				return err
			}
		case <-cfg.Ticks:
			if cfg.OnTick != nil {
				cfg.OnTick()
			}
			t := now()
			if t.Sub(lastDone) > cfg.Stall {
				return &StallError{After: cfg.Stall, Outstanding: len(outstanding)}
			}
			for u, f := range outstanding {
				if f.unsent {
					if err := send(u, f.attempt); err != nil {
						return err
					}
					continue
				}
				if t.Sub(f.published) < cfg.Timeout {
					continue
				}
				// A re-issued item queues behind the rest of the work, so
				// running out of attempts fails the step only when nothing
				// else completes either; a busy job just tries again.
				if f.attempt+1 >= cfg.MaxAttempts && t.Sub(lastDone) >= cfg.Timeout {
					return fmt.Errorf("%s: %w after %d attempts of %s each", u, ErrNoCompletion, f.attempt+1, cfg.Timeout)
				}
				logger.WarnContext(ctx, "re-issuing work", "op", u.Op, "index", u.Index, "attempt", f.attempt+1)
				if err := send(u, f.attempt+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
