package retention

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrEmptyPolicy is returned by Apply for a policy that sets no rule.
	// Forgetting must be asked for explicitly, so an empty policy is an
	// error rather than "keep nothing" or "keep everything".
	ErrEmptyPolicy = errors.New("retention: empty policy: set at least one keep rule")

	// ErrInvalid is matched (errors.Is) by every error of ParseDuration,
	// ParseCount, ParseGroupBy and Policy.Validate.
	ErrInvalid = errors.New("retention: invalid policy")

	// ErrRemovesAll is returned by Apply when the policy would remove every
	// snapshot of a group, which only a policy of KeepTags alone can do.
	// As restic does, Apply refuses rather than empty a group.
	ErrRemovesAll = errors.New("retention: policy removes every snapshot of a group")
)

// Unlimited as a count keeps one snapshot in every bucket, however many
// there are (restic's "unlimited").
const Unlimited = -1

// Policy says which snapshots of a group to keep; the rest are removed. A
// snapshot is kept if any rule keeps it. Counts are 0 (rule off), Unlimited,
// or a positive number of buckets; the zero Policy sets no rule (see Empty).
// See the package documentation for how each rule chooses.
type Policy struct {
	// Last keeps the newest Last snapshots.
	Last int
	// Hourly, Daily, Weekly, Monthly and Yearly keep the newest snapshot
	// of each of the newest so many clock hours, calendar days, ISO weeks
	// (Monday to Sunday), months and years that hold a snapshot.
	Hourly, Daily, Weekly, Monthly, Yearly int

	// Within keeps every snapshot newer than the group's newest snapshot
	// minus Within.
	Within Duration
	// WithinHourly, WithinDaily, WithinWeekly, WithinMonthly and
	// WithinYearly keep the newest snapshot of every hour, day, week,
	// month and year in that period, however many there are.
	WithinHourly, WithinDaily, WithinWeekly, WithinMonthly, WithinYearly Duration

	// KeepTags keeps every snapshot that matches any entry. An entry is a
	// tag, or comma-separated tags that must all be present ("prod,db");
	// the empty entry "" matches snapshots without tags.
	KeepTags []string
}

// Empty reports whether p sets no rule at all. Apply refuses such a policy.
func (p Policy) Empty() bool {
	var zero Duration
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within == zero && p.WithinHourly == zero && p.WithinDaily == zero &&
		p.WithinWeekly == zero && p.WithinMonthly == zero && p.WithinYearly == zero &&
		len(p.KeepTags) == 0
}

// Validate reports the first field of p that holds a value no rule can
// use: a count below Unlimited, or a negative or oversized period. The
// error matches ErrInvalid and names the field.
func (p Policy) Validate() error {
	for _, c := range p.counts() {
		if c.n < Unlimited {
			return fmt.Errorf("%w: %s count %d: want %d (unlimited), 0 (off) or more", ErrInvalid, c.name, c.n, Unlimited)
		}
	}
	if err := p.Within.validate(); err != nil {
		return fmt.Errorf("%w: within: %v", ErrInvalid, err)
	}
	for _, w := range p.withins() {
		if err := w.d.validate(); err != nil {
			return fmt.Errorf("%w: %s within: %v", ErrInvalid, w.name, err)
		}
	}
	return nil
}

// String describes p for people, as `forget` prints it: "keep 7 daily,
// all monthly snapshots, daily snapshots within 7d, all snapshots within
// 1y of the newest, all snapshots with tags [prod]".
func (p Policy) String() string {
	if p.Empty() {
		return "empty policy"
	}
	var parts, counts []string
	for _, c := range p.counts() {
		switch {
		case c.n == Unlimited:
			counts = append(counts, "all "+c.name)
		case c.n > 0:
			counts = append(counts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	if len(counts) > 0 {
		parts = append(parts, strings.Join(counts, ", ")+" snapshots")
	}
	for _, w := range p.withins() {
		if !w.d.Zero() {
			parts = append(parts, fmt.Sprintf("%s snapshots within %s", w.name, w.d))
		}
	}
	if !p.Within.Zero() {
		parts = append(parts, fmt.Sprintf("all snapshots within %s of the newest", p.Within))
	}
	for _, e := range p.KeepTags {
		parts = append(parts, "all snapshots with "+tagPhrase(parseTagEntry(e)))
	}
	return "keep " + strings.Join(parts, ", ")
}

// ParseCount parses a keep count as a flag gives it: "unlimited" or -1 for
// Unlimited, or a whole number of 0 or more. Errors match ErrInvalid.
func ParseCount(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return Unlimited, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < Unlimited {
		return 0, fmt.Errorf("%w: count %q: want a number of 0 or more, or \"unlimited\"", ErrInvalid, s)
	}
	return n, nil
}

// namedCount is one count rule of a Policy: its name in String, its
// reason in Kept, and how it buckets snapshots.
type namedCount struct {
	name, reason string
	n            int
	bucket       bucketFunc
}

// counts lists p's count rules in the order Apply evaluates them.
func (p Policy) counts() []namedCount {
	return []namedCount{
		{"latest", "last snapshot", p.Last, byIndex},
		{"hourly", "hourly snapshot", p.Hourly, byHour},
		{"daily", "daily snapshot", p.Daily, byDay},
		{"weekly", "weekly snapshot", p.Weekly, byWeek},
		{"monthly", "monthly snapshot", p.Monthly, byMonth},
		{"yearly", "yearly snapshot", p.Yearly, byYear},
	}
}

// namedWithin is one bucketed period rule of a Policy.
type namedWithin struct {
	name   string
	d      Duration
	bucket bucketFunc
}

// withins lists p's bucketed period rules in the order Apply evaluates them.
func (p Policy) withins() []namedWithin {
	return []namedWithin{
		{"hourly", p.WithinHourly, byHour},
		{"daily", p.WithinDaily, byDay},
		{"weekly", p.WithinWeekly, byWeek},
		{"monthly", p.WithinMonthly, byMonth},
		{"yearly", p.WithinYearly, byYear},
	}
}

// parseTagEntry splits a KeepTags entry into the tags a snapshot must all
// carry; the empty entry gives no tags, which matches untagged snapshots.
func parseTagEntry(e string) []string {
	var tags []string
	for _, t := range strings.Split(e, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

// matchTags reports whether a snapshot carrying have matches a KeepTags
// entry parsed into want.
func matchTags(have, want []string) bool {
	if len(want) == 0 {
		return len(have) == 0
	}
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// tagReason is the reason a snapshot matching want is kept, in restic's
// words: "has tags [prod, db]"; "has no tags" for the empty entry.
func tagReason(want []string) string { return "has " + tagPhrase(want) }

// tagPhrase names a parsed KeepTags entry: "tags [prod, db]" or "no tags".
func tagPhrase(want []string) string {
	if len(want) == 0 {
		return "no tags"
	}
	return "tags [" + strings.Join(want, ", ") + "]"
}
