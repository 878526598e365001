package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/schedule"
)

// utc is a shorthand for a UTC instant.
func utc(year int, month time.Month, day, hour, min int) time.Time {
	return time.Date(year, month, day, hour, min, 0, 0, time.UTC)
}

func mustParse(t *testing.T, cron, tz string) *schedule.Spec {
	t.Helper()
	s, err := schedule.Parse(cron, tz)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", cron, tz, err)
	}
	return s
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, cron, tz string
		wantTZ         string
		wantErr        string // a part of the message; "" for success
	}{
		{name: "daily in UTC by default", cron: "0 2 * * *", wantTZ: "UTC"},
		{name: "zone", cron: "0 2 * * *", tz: "Europe/Berlin", wantTZ: "Europe/Berlin"},
		{name: "descriptor", cron: "@daily", tz: "America/New_York", wantTZ: "America/New_York"},
		{name: "steps and lists", cron: "*/15 8-18 * * 1-5", wantTZ: "UTC"},
		{name: "once in four years", cron: "0 0 29 2 *", wantTZ: "UTC"},
		{name: "four fields", cron: "0 2 * *", wantErr: "expected exactly 5 fields"},
		{name: "six fields", cron: "0 0 2 * * *", wantErr: "expected exactly 5 fields"},
		{name: "minute out of range", cron: "61 * * * *", wantErr: `"61 * * * *"`},
		{name: "garbage", cron: "every night", wantErr: `"every night"`},
		{name: "empty", cron: "  ", wantErr: "no cron expression"},
		{name: "every", cron: "@every 1h", wantErr: "@every is not supported"},
		{name: "zone in the expression", cron: "CRON_TZ=Europe/Berlin 0 2 * * *", wantErr: "time zone separately"},
		{name: "never fires", cron: "0 0 30 2 *", wantErr: "never fires"},
		{name: "unknown zone", cron: "0 2 * * *", tz: "Mars/Olympus_Mons", wantErr: `timezone "Mars/Olympus_Mons"`},
		{name: "machine's zone", cron: "0 2 * * *", tz: "Local", wantErr: `timezone "Local"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := schedule.Parse(tt.cron, tt.tz)
			if tt.wantErr != "" {
				if !errors.Is(err, schedule.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q, %q) = %v, want ErrInvalid mentioning %q", tt.cron, tt.tz, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q, %q): %v", tt.cron, tt.tz, err)
			}
			if s.Timezone() != tt.wantTZ || s.Cron() != strings.TrimSpace(tt.cron) {
				t.Errorf("Parse(%q, %q) = cron %q in %s, want %s", tt.cron, tt.tz, s.Cron(), s.Timezone(), tt.wantTZ)
			}
		})
	}
}

// TestNext pins the windows across daylight-saving changes: 2025-03-30
// (Europe/Berlin skips 02:00-03:00 CET, i.e. 01:00 UTC) and 2025-10-26
// (Berlin repeats 02:00-03:00: 00:00-01:00 UTC in CEST, 01:00-02:00 UTC in
// CET), and 2025-03-09 for America/New_York.
func TestNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, cron, tz string
		from           time.Time
		want           []time.Time // the windows after from, in order
	}{
		{
			name: "daily in UTC", cron: "0 2 * * *", from: utc(2025, 1, 1, 0, 0),
			want: []time.Time{utc(2025, 1, 1, 2, 0), utc(2025, 1, 2, 2, 0)},
		},
		{
			name: "a window is strictly after from", cron: "0 2 * * *", from: utc(2025, 1, 1, 2, 0),
			want: []time.Time{utc(2025, 1, 2, 2, 0)},
		},
		{
			name: "daily in Berlin winter and summer", cron: "0 2 * * *", tz: "Europe/Berlin", from: utc(2025, 3, 28, 12, 0),
			want: []time.Time{utc(2025, 3, 29, 1, 0), utc(2025, 3, 30, 1, 0), utc(2025, 3, 31, 0, 0)},
		},
		{
			name: "skipped hour fires when the clocks jump", cron: "30 2 * * *", tz: "Europe/Berlin", from: utc(2025, 3, 29, 12, 0),
			want: []time.Time{utc(2025, 3, 30, 1, 0), utc(2025, 3, 31, 0, 30)},
		},
		{
			name: "two windows in the skipped hour fire once", cron: "15,45 2 * * *", tz: "Europe/Berlin", from: utc(2025, 3, 29, 12, 0),
			want: []time.Time{utc(2025, 3, 30, 1, 0), utc(2025, 3, 31, 0, 15), utc(2025, 3, 31, 0, 45)},
		},
		{
			name: "repeated hour fires once, at the first occurrence", cron: "30 2 * * *", tz: "Europe/Berlin", from: utc(2025, 10, 25, 12, 0),
			want: []time.Time{utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)},
		},
		{
			name: "from inside the repeated hour", cron: "30 2 * * *", tz: "Europe/Berlin", from: utc(2025, 10, 26, 1, 10),
			want: []time.Time{utc(2025, 10, 27, 1, 30)},
		},
		{
			name: "hourly runs in both passes of the repeated hour", cron: "30 * * * *", tz: "Europe/Berlin", from: utc(2025, 10, 26, 0, 0),
			want: []time.Time{utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 2, 30)},
		},
		{
			name: "hourly has no window in the skipped hour", cron: "30 * * * *", tz: "Europe/Berlin", from: utc(2025, 3, 30, 0, 0),
			want: []time.Time{utc(2025, 3, 30, 0, 30), utc(2025, 3, 30, 1, 30), utc(2025, 3, 30, 2, 30)},
		},
		{
			name: "weekdays in New York", cron: "0 9 * * 1-5", tz: "America/New_York", from: utc(2025, 3, 7, 15, 0),
			want: []time.Time{utc(2025, 3, 10, 13, 0), utc(2025, 3, 11, 13, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, tt.cron, tt.tz)
			from := tt.from
			for i, want := range tt.want {
				got := s.Next(from)
				if !got.Equal(want) {
					t.Fatalf("window %d after %s = %s (%s), want %s (%s)", i, from.UTC(), got.UTC(), got, want, want.In(s.Location()))
				}
				from = got
			}
		})
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	created := utc(2025, 1, 1, 12, 0)
	tests := []struct {
		name       string
		cron, tz   string
		paused     bool
		since      time.Time
		last, now  time.Time
		wantWindow time.Time // zero: not due
	}{
		{name: "before the first window", cron: "0 2 * * *", since: created, now: utc(2025, 1, 2, 1, 59)},
		{name: "at the window", cron: "0 2 * * *", since: created, now: utc(2025, 1, 2, 2, 0), wantWindow: utc(2025, 1, 2, 2, 0)},
		{name: "a tick after the window", cron: "0 2 * * *", since: created, now: utc(2025, 1, 2, 2, 0).Add(15 * time.Second), wantWindow: utc(2025, 1, 2, 2, 0)},
		{name: "window already fired", cron: "0 2 * * *", since: created, last: utc(2025, 1, 2, 2, 0), now: utc(2025, 1, 2, 23, 0)},
		{name: "next window after the one fired", cron: "0 2 * * *", since: created, last: utc(2025, 1, 2, 2, 0), now: utc(2025, 1, 3, 2, 1), wantWindow: utc(2025, 1, 3, 2, 0)},
		{
			name: "windows missed while down fire once, the newest", cron: "0 2 * * *", since: created,
			last: utc(2025, 1, 2, 2, 0), now: utc(2025, 1, 5, 9, 0), wantWindow: utc(2025, 1, 5, 2, 0),
		},
		{
			name: "months missed on a frequent schedule", cron: "*/5 * * * *", since: created,
			last: utc(2025, 1, 2, 2, 0), now: utc(2025, 7, 1, 10, 7), wantWindow: utc(2025, 7, 1, 10, 5),
		},
		{name: "window before creation never fires", cron: "0 2 * * *", since: utc(2025, 1, 2, 3, 0), now: utc(2025, 1, 2, 4, 0)},
		{name: "paused", cron: "0 2 * * *", paused: true, since: created, now: utc(2025, 1, 5, 4, 0)},
		{
			name: "windows missed while paused do not fire on resume", cron: "0 2 * * *", since: utc(2025, 1, 5, 4, 0),
			last: utc(2025, 1, 2, 2, 0), now: utc(2025, 1, 5, 4, 1),
		},
		{
			name: "first window after resume", cron: "0 2 * * *", since: utc(2025, 1, 5, 4, 0),
			last: utc(2025, 1, 2, 2, 0), now: utc(2025, 1, 6, 2, 0), wantWindow: utc(2025, 1, 6, 2, 0),
		},
		{name: "clock before the last window", cron: "0 2 * * *", since: created, last: utc(2025, 1, 3, 2, 0), now: utc(2025, 1, 2, 2, 30)},
		{
			name: "spring forward: not due before the jump", cron: "30 2 * * *", tz: "Europe/Berlin", since: created,
			last: utc(2025, 3, 29, 1, 30), now: utc(2025, 3, 30, 0, 59),
		},
		{
			name: "spring forward: due at the jump", cron: "30 2 * * *", tz: "Europe/Berlin", since: created,
			last: utc(2025, 3, 29, 1, 30), now: utc(2025, 3, 30, 1, 0), wantWindow: utc(2025, 3, 30, 1, 0),
		},
		{
			name: "fall back: due at the first 02:30", cron: "30 2 * * *", tz: "Europe/Berlin", since: created,
			last: utc(2025, 10, 25, 0, 30), now: utc(2025, 10, 26, 0, 31), wantWindow: utc(2025, 10, 26, 0, 30),
		},
		{
			name: "fall back: the second 02:30 does not fire", cron: "30 2 * * *", tz: "Europe/Berlin", since: created,
			last: utc(2025, 10, 26, 0, 30), now: utc(2025, 10, 26, 1, 45),
		},
		{
			name: "fall back: hourly fires the second pass", cron: "30 * * * *", tz: "Europe/Berlin", since: created,
			last: utc(2025, 10, 26, 0, 30), now: utc(2025, 10, 26, 1, 45), wantWindow: utc(2025, 10, 26, 1, 30),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := schedule.Schedule{Spec: mustParse(t, tt.cron, tt.tz), Paused: tt.paused, Since: tt.since}
			window, due := schedule.Due(s, tt.last, tt.now)
			if due != !tt.wantWindow.IsZero() || !window.Equal(tt.wantWindow) {
				t.Errorf("Due(last %s, now %s) = %s, %v; want %s, %v", tt.last, tt.now, window.UTC(), due, tt.wantWindow, !tt.wantWindow.IsZero())
			}
			if tt.paused {
				return
			}
			// Once the window is handled, the same time has nothing due.
			if due {
				if w, again := schedule.Due(s, window, tt.now); again {
					t.Errorf("Due after handling %s = %s again", window.UTC(), w.UTC())
				}
			}
		})
	}
}

func TestNextSchedule(t *testing.T) {
	t.Parallel()
	spec := mustParse(t, "0 2 * * *", "")
	created := utc(2025, 1, 1, 12, 0)
	s := schedule.Schedule{Spec: spec, Since: created}
	if got, want := schedule.Next(s, time.Time{}, utc(2025, 1, 1, 13, 0)), utc(2025, 1, 2, 2, 0); !got.Equal(want) {
		t.Errorf("next = %s, want %s", got, want)
	}
	// A due window is the next one.
	if got, want := schedule.Next(s, time.Time{}, utc(2025, 1, 3, 13, 0)), utc(2025, 1, 3, 2, 0); !got.Equal(want) {
		t.Errorf("next while due = %s, want %s", got, want)
	}
	if got, want := schedule.Next(s, utc(2025, 1, 3, 2, 0), utc(2025, 1, 3, 13, 0)), utc(2025, 1, 4, 2, 0); !got.Equal(want) {
		t.Errorf("next after the due window fired = %s, want %s", got, want)
	}
	s.Paused = true
	if got := schedule.Next(s, time.Time{}, utc(2025, 1, 3, 13, 0)); !got.IsZero() {
		t.Errorf("next of a paused schedule = %s, want none", got)
	}
}

// TestLastWithoutStart looks back from a zero start: a window is found, and
// doubling the look-back span does not overflow.
func TestLastWithoutStart(t *testing.T) {
	t.Parallel()
	now := utc(2025, 5, 5, 5, 5)
	if got, want := mustParse(t, "0 0 1 1 *", "").Last(time.Time{}, now), utc(2025, 1, 1, 0, 0); !got.Equal(want) {
		t.Errorf("Last = %s, want %s", got, want)
	}
	if got, want := mustParse(t, "0 0 29 2 *", "").Last(time.Time{}, now), utc(2024, 2, 29, 0, 0); !got.Equal(want) {
		t.Errorf("Last = %s, want %s", got, want)
	}
}
