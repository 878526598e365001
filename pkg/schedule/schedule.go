// Package schedule decides when a backup schedule is due: which cron
// window, in which time zone, after which window already handled. It has
// no clock and no I/O of its own; the caller passes the time in, so the
// coordinator can run it on a real clock and tests on an injected one.
//
// A window is an instant at which a cron expression fires, its fields read
// as wall-clock time in the schedule's time zone. Across daylight-saving
// changes windows follow classic cron's rules. A schedule whose hour field
// is "*" (every hour) is interval-like: it fires whenever the wall clock
// matches, so it runs in both passes of a repeated hour and not at all in
// a skipped one, as real time passes. Any other schedule names fixed times
// of day: a window in the hour the clocks skip (02:30 on a spring-forward
// night) fires once, when the clocks jump (03:00 local time), and a window
// in the hour the clocks repeat (02:30 on a fall-back night) fires once, at
// its first occurrence. So a daily schedule fires once every local day.
//
// Due returns at most one window however many have passed since the last
// one handled: a coordinator that was down over several windows runs one
// backup, for the newest window, not one per missed window.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // time zones resolve alike on every coordinator, whatever its host has installed

	"github.com/robfig/cron/v3"
)

// ErrInvalid is matched (errors.Is) by every error Parse returns.
var ErrInvalid = errors.New("schedule: invalid schedule")

// invalidError is a Parse error: its message names what is wrong, and it
// matches ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Spec is a parsed cron expression in a time zone. It is immutable and safe
// for concurrent use.
type Spec struct {
	cron string
	loc  *time.Location
	// sched runs in loc when hourly; otherwise in UTC on wall-clock times
	// carried as UTC (see instant).
	sched *cron.SpecSchedule
	// hourly is set when the hour field matches every hour.
	hourly bool
}

// Parse parses a standard five-field cron expression (minute, hour, day of
// month, month, day of week; descriptors such as @daily are accepted) and
// an IANA time zone name; an empty timezone means UTC. It refuses @every,
// whose windows depend on when it was first evaluated rather than on the
// clock, an expression that carries its own TZ= or CRON_TZ= prefix, and
// one that never fires.
func Parse(expr, timezone string) (*Spec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, invalid("no cron expression given")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, invalid("cron %q: give the time zone separately, not in the expression", expr)
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, invalid("cron %q: @every is not supported; windows must be fixed times (e.g. \"*/15 * * * *\")", expr)
	}
	loc, err := loadLocation(timezone)
	if err != nil {
		return nil, err
	}
	parsed, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, invalid("cron %q: %v", expr, err)
	}
	sched, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, invalid("cron %q: not a calendar schedule", expr)
	}
	s := *sched
	const allHours = 1<<24 - 1
	spec := &Spec{cron: expr, sched: &s, loc: loc, hourly: s.Hour&allHours == allHours}
	s.Location = time.UTC
	if spec.hourly {
		s.Location = loc
	}
	// The cron library looks five years ahead, so this finds even windows
	// that come once in four years (29 February).
	if s.Next(time.Unix(0, 0).UTC()).IsZero() {
		return nil, invalid("cron %q never fires", expr)
	}
	return spec, nil
}

func loadLocation(name string) (*time.Location, error) {
	switch name {
	case "":
		return time.UTC, nil
	case "Local":
		// The zone of whichever machine runs the coordinator: not a zone
		// anyone can rely on.
		return nil, invalid("timezone %q: name a zone such as UTC or Europe/Berlin", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, invalid("timezone %q: %v", name, err)
	}
	return loc, nil
}

// Cron returns the cron expression as parsed.
func (s *Spec) Cron() string { return s.cron }

// Timezone returns the name of the time zone ("UTC" when none was given).
func (s *Spec) Timezone() string { return s.loc.String() }

// Location returns the time zone windows are read in.
func (s *Spec) Location() *time.Location { return s.loc }

// Next returns the first window strictly after t, in the spec's time zone,
// or the zero time if none comes within five years.
func (s *Spec) Next(t time.Time) time.Time {
	if s.hourly {
		return s.sched.Next(t).In(s.loc)
	}
	w := wall(t.In(s.loc))
	for {
		w = s.sched.Next(w)
		if w.IsZero() {
			return time.Time{}
		}
		// Wall-clock windows come in order, but in a repeated hour an
		// instant can lie before t; step on until one lies after it.
		if at := instant(w, s.loc); at.After(t) {
			return at
		}
	}
}

// Last returns the newest window in (after, now], or the zero time if
// there is none.
func (s *Spec) Last(after, now time.Time) time.Time {
	if !now.After(after) {
		return time.Time{}
	}
	// Find a short span (now-d, now] holding a window by doubling d, so a
	// long gap since after costs a few steps, not one per window in it.
	from := after
	for d := time.Minute; ; d *= 2 {
		start := now.Add(-d)
		widest := d <= 0 || d >= now.Sub(after) // d <= 0: doubled past the largest Duration
		if widest {
			start = after
		}
		if n := s.Next(start); !n.IsZero() && !n.After(now) {
			from = start
			break
		}
		if widest {
			return time.Time{}
		}
	}
	var last time.Time
	for t := s.Next(from); !t.IsZero() && !t.After(now); t = s.Next(t) {
		last = t
	}
	return last
}

// Schedule is what decides whether a schedule is due.
type Schedule struct {
	Spec *Spec
	// Paused schedules are never due.
	Paused bool
	// Since is when the schedule was created or last resumed: windows at
	// or before it never fire, so adding or resuming a schedule does not
	// start a backup for a window that passed before.
	Since time.Time
}

// Due reports whether s has a window to fire at time now, and which: the
// newest window after both s.Since and last (the newest window already
// fired or skipped; zero if none) and not after now. Windows older than
// that one are never returned: they are superseded, not queued.
func Due(s Schedule, last, now time.Time) (window time.Time, due bool) {
	if s.Paused || s.Spec == nil {
		return time.Time{}, false
	}
	w := s.Spec.Last(latest(s.Since, last), now)
	return w, !w.IsZero()
}

// Next returns the window s fires at next, as seen at time now: the due
// window if there is one, else the first window after now. It is zero for a
// paused schedule.
func Next(s Schedule, last, now time.Time) time.Time {
	if w, due := Due(s, last, now); due {
		return w
	}
	if s.Paused || s.Spec == nil {
		return time.Time{}
	}
	return s.Spec.Next(latest(now, s.Since, last))
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// wall returns t's wall clock reading carried as a UTC time.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// sameWall reports whether t reads w on the wall clock of its location.
func sameWall(t, w time.Time) bool { return wall(t).Equal(w) }

// instant returns the first instant whose wall clock in loc reads w (a
// wall-clock time carried as UTC), or, if the clocks skip w, the instant
// they jump past it.
func instant(w time.Time, loc *time.Location) time.Time {
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc)
	if sameWall(t, w) {
		// In a repeated hour, t may be the second occurrence: the zone
		// before t's might read w too, earlier.
		if start, _ := t.ZoneBounds(); !start.IsZero() {
			_, prevOffset := start.Add(-time.Nanosecond).Zone()
			if e := w.Add(-time.Duration(prevOffset) * time.Second).In(loc); e.Before(start) && sameWall(e, w) {
				return e
			}
		}
		return t
	}
	// w falls in a gap: t is w read in the zone before or after it, and
	// the gap ends where t's zone starts or ends.
	start, end := t.ZoneBounds()
	if wall(t).After(w) {
		return start
	}
	return end
}
