package retention

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a calendar period of years, months, days and hours, written
// "1y5m7d2h" as in restic's --keep-within. Unlike time.Duration its months
// and years have no fixed length: a period is taken back from an instant
// with time.Time.AddDate, so "1m" before 31 March is 3 March (AddDate
// normalises 31 February), then the hours are subtracted as elapsed time.
// The zero Duration is no period at all.
//
// *Duration implements flag.Value, so a FlagSet can fill Policy fields.
type Duration struct {
	Years, Months, Days, Hours int
}

// maxHours is the most hours a Duration may hold: more do not fit in a
// time.Duration.
const maxHours = math.MaxInt64 / int64(time.Hour)

// ParseDuration parses a period in restic's notation: numbers each followed
// by a unit, y (years), m (months), d (days) or h (hours), in any order and
// without spaces between them, such as "1y5m7d2h" or "36h". Leading and
// trailing spaces are ignored and an empty string is the zero Duration. As
// in restic, a unit given twice keeps its last value and a number may carry
// a minus sign; Policy.Validate refuses negative periods. Every error
// matches ErrInvalid.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := 0
		if rest[0] == '-' {
			i = 1
		}
		j := i
		for j < len(rest) && '0' <= rest[j] && rest[j] <= '9' {
			j++
		}
		if j == i {
			return Duration{}, fmt.Errorf("%w: duration %q: want a number at %q", ErrInvalid, s, rest)
		}
		n, err := strconv.Atoi(rest[:j])
		if err != nil {
			return Duration{}, fmt.Errorf("%w: duration %q: %v", ErrInvalid, s, err)
		}
		if j == len(rest) {
			return Duration{}, fmt.Errorf("%w: duration %q: no unit after %d (want y, m, d or h)", ErrInvalid, s, n)
		}
		switch rest[j] {
		case 'y':
			d.Years = n
		case 'm':
			d.Months = n
		case 'd':
			d.Days = n
		case 'h':
			d.Hours = n
		default:
			return Duration{}, fmt.Errorf("%w: duration %q: unknown unit %q after %d (want y, m, d or h)", ErrInvalid, s, rest[j], n)
		}
		rest = rest[j+1:]
	}
	return d, nil
}

// String returns d in the form ParseDuration reads, leaving out zero units
// ("1y2d"); the zero Duration is "0h".
func (d Duration) String() string {
	var b strings.Builder
	for _, u := range []struct {
		n    int
		unit byte
	}{{d.Years, 'y'}, {d.Months, 'm'}, {d.Days, 'd'}, {d.Hours, 'h'}} {
		if u.n != 0 {
			b.WriteString(strconv.Itoa(u.n))
			b.WriteByte(u.unit)
		}
	}
	if b.Len() == 0 {
		return "0h"
	}
	return b.String()
}

// Set parses s with ParseDuration into d, for flag.Value.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Zero reports whether d is no period at all.
func (d Duration) Zero() bool { return d == Duration{} }

// validate refuses what before cannot take back: negative units, and more
// hours than a time.Duration holds.
func (d Duration) validate() error {
	if d.Years < 0 || d.Months < 0 || d.Days < 0 || d.Hours < 0 {
		return fmt.Errorf("negative period %s", d)
	}
	if int64(d.Hours) > maxHours {
		return fmt.Errorf("period %s: more than %d hours", d, maxHours)
	}
	return nil
}

// before returns the instant d before t, by restic's rule: calendar units
// by AddDate, then hours as elapsed time.
func (d Duration) before(t time.Time) time.Time {
	return t.AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}
