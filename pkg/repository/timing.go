package repository

import (
	"fmt"
	"time"
)

// Timing holds the periods of the prune protocol (docs/format.md section
// 10.6). They are part of the format: every process that backs up into a
// repository and every prune of it must use the same values, and every
// binary uses DefaultTiming. A test that runs writers and prunes in one
// process may shorten them all together (OpenOptions.Timing).
type Timing struct {
	// WriterRenew is how often a running backup rewrites its registration.
	WriterRenew time.Duration
	// WriterExpiry is how long after its last renewal a registration
	// counts as ended: its backup's coordinator is gone. A backup that
	// could not renew for WriterExpiry less a fifth (the allowance for
	// clocks that disagree) must not commit.
	WriterExpiry time.Duration
	// GuardRefresh bounds how old a process's view of the repository's
	// prunes and damage records may be when it decides to reuse a chunk.
	GuardRefresh time.Duration
	// GuardWait is how long a prune waits, once it has published its
	// condemned chunks, before it lists the running backups: longer than
	// GuardRefresh, so every backup that starts after the listing sees
	// the prune.
	GuardWait time.Duration
	// DeleteWindow is how long a sweep may go on deleting after it last
	// confirmed that its prune is sweeping and listed the chunks backups
	// asked it to keep; then it confirms and lists again.
	DeleteWindow time.Duration
	// DeleteFence is how long a backup waits, after a shard's deletion
	// ended, before it relies on a chunk of that shard, and how long a
	// prune waits between closing and done: longer than DeleteWindow, so
	// that every delete of a sweep that may still run has happened.
	DeleteFence time.Duration
	// Poll is how often a waiting party looks again.
	Poll time.Duration
}

// DefaultTiming is the protocol's timing, as docs/format.md gives it.
var DefaultTiming = Timing{
	WriterRenew:  time.Minute,
	WriterExpiry: 10 * time.Minute,
	GuardRefresh: 10 * time.Second,
	GuardWait:    15 * time.Second,
	DeleteWindow: 30 * time.Second,
	DeleteFence:  45 * time.Second,
	Poll:         time.Second,
}

// FastTiming is DefaultTiming scaled down for tests that run every party
// of the protocol in one process.
var FastTiming = Timing{
	WriterRenew:  100 * time.Millisecond,
	WriterExpiry: 2 * time.Second,
	GuardRefresh: 100 * time.Millisecond,
	GuardWait:    200 * time.Millisecond,
	DeleteWindow: 300 * time.Millisecond,
	DeleteFence:  500 * time.Millisecond,
	Poll:         20 * time.Millisecond,
}

// Lapse is how long a backup may go without renewing its registration
// before it must not commit: WriterExpiry less a fifth.
func (t Timing) Lapse() time.Duration { return t.WriterExpiry - t.WriterExpiry/5 }

// validate checks the orderings the protocol's safety rests on.
func (t Timing) validate() error {
	switch {
	case t.WriterRenew <= 0 || t.GuardRefresh <= 0 || t.DeleteWindow <= 0 || t.Poll <= 0:
		return fmt.Errorf("repository: timing %+v: periods must be positive", t)
	case t.WriterExpiry < 3*t.WriterRenew:
		return fmt.Errorf("repository: timing: writer expiry %s must be at least three renewals (%s)", t.WriterExpiry, t.WriterRenew)
	case t.GuardWait <= t.GuardRefresh:
		return fmt.Errorf("repository: timing: guard wait %s must exceed the guard refresh %s", t.GuardWait, t.GuardRefresh)
	case t.DeleteFence <= t.DeleteWindow:
		return fmt.Errorf("repository: timing: delete fence %s must exceed the delete window %s", t.DeleteFence, t.DeleteWindow)
	}
	return nil
}
