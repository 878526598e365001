package retention

import (
	"fmt"
	"time"
)

// Snapshot is what a policy decides on: one backup, of a path on a host,
// taken at Time. Calendar rules read Time in its own location; convert
// times (Time.In) first to count days in another time zone.
type Snapshot struct {
	ID   string
	Time time.Time
	Host string
	Path string
	Tags []string
}

// Kept is a snapshot the policy keeps.
type Kept struct {
	Snapshot
	// Reasons names every rule that keeps the snapshot, in the order
	// tags, within, last, hourly to yearly, hourly within to yearly
	// within: "has tags [prod]", "within 1y", "last snapshot", "daily
	// snapshot", "daily within 7d". A rule that keeps a group's oldest
	// snapshot only because it is the oldest says so: "oldest yearly
	// snapshot".
	Reasons []string
}

// Apply applies p to snaps, grouped by by, at time now, and returns each
// group's decision, groups ordered by host, path and tags. Every snapshot
// ends in its group's Keep or Remove. now only marks which snapshots are
// in the future (after now): those do not count as a group's newest, from
// which the within rules measure back. The result depends only on the
// arguments; Apply does not modify snaps.
//
// Apply returns ErrEmptyPolicy if p sets no rule, an error matching
// ErrInvalid if p does not validate, and one matching ErrRemovesAll, naming
// the group, if p would remove all of a group's snapshots; no groups then.
func Apply(snaps []Snapshot, p Policy, by GroupBy, now time.Time) ([]Group, error) {
	if p.Empty() {
		return nil, ErrEmptyPolicy
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	groups := group(snaps, by)
	for i := range groups {
		g := &groups[i]
		g.Keep, g.Remove = decide(g.Remove, p, now)
		if len(g.Keep) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrRemovesAll, g.Name())
		}
	}
	return groups, nil
}

// bucketFunc names the bucket a snapshot falls in: its clock hour, day,
// ISO week, month or year, or for keep-last its index i in the list, so
// that every snapshot is a bucket of its own.
type bucketFunc func(t time.Time, i int) int64

func byIndex(_ time.Time, i int) int64 { return int64(i) }

func byHour(t time.Time, _ int) int64 { return byDay(t, 0)*100 + int64(t.Hour()) }

func byDay(t time.Time, _ int) int64 { return byMonth(t, 0)*100 + int64(t.Day()) }

func byWeek(t time.Time, _ int) int64 {
	year, week := t.ISOWeek()
	return int64(year)*100 + int64(week)
}

func byMonth(t time.Time, _ int) int64 { return int64(t.Year())*100 + int64(t.Month()) }

func byYear(t time.Time, _ int) int64 { return int64(t.Year()) }

// rule is one bucketed rule as the snapshots are walked newest first.
type rule struct {
	reason string
	// left is how many more buckets the rule may keep a snapshot in;
	// Unlimited for no limit, 0 once it is done.
	left int
	// within rules only keep snapshots after cutoff.
	within bool
	cutoff time.Time
	bucket bucketFunc
	// last is the bucket of the snapshot kept last, if any was.
	last int64
	seen bool
}

// keeps reports whether r keeps the i-th snapshot, taken at t, and why.
// The snapshot is kept if it opens a bucket: it is the newest of its
// bucket, as the list is newest first. The oldest snapshot of the list is
// kept too while r has buckets left (restic keeps it to stretch the
// history kept while the policy is not yet filled), reasoned "oldest" when
// it opens no bucket.
func (r *rule) keeps(t time.Time, i int, oldest bool) (string, bool) {
	if r.left == 0 || r.within && !t.After(r.cutoff) {
		return "", false
	}
	b := r.bucket(t, i)
	same := r.seen && b == r.last
	if same && !oldest {
		return "", false
	}
	r.last, r.seen = b, true
	if r.left > 0 {
		r.left--
	}
	if same {
		return "oldest " + r.reason, true
	}
	return r.reason, true
}

// decide applies p to one group's snapshots, sorted newest first.
func decide(list []Snapshot, p Policy, now time.Time) (keep []Kept, remove []Snapshot) {
	// The within rules measure back from the newest snapshot that is not
	// in the future, so that a snapshot with a clock far ahead cannot
	// push the others out. A snapshot taken at now counts (restic's
	// test is Before(now), which would skip the snapshot just taken when
	// a schedule forgets right after a backup).
	var latest time.Time
	for _, sn := range list {
		if !sn.Time.After(now) {
			latest = sn.Time
			break
		}
	}

	var rules []*rule
	for _, c := range p.counts() {
		if c.n != 0 {
			rules = append(rules, &rule{reason: c.reason, left: c.n, bucket: c.bucket})
		}
	}
	for _, w := range p.withins() {
		if !w.d.Zero() {
			rules = append(rules, &rule{
				reason: fmt.Sprintf("%s within %s", w.name, w.d),
				left:   Unlimited,
				within: true,
				cutoff: w.d.before(latest),
				bucket: w.bucket,
			})
		}
	}
	tags := make([][]string, len(p.KeepTags))
	for i, e := range p.KeepTags {
		tags[i] = parseTagEntry(e)
	}
	cutoff := p.Within.before(latest)

	for i, sn := range list {
		var reasons []string
		for _, want := range tags {
			if matchTags(sn.Tags, want) {
				reasons = append(reasons, tagReason(want))
			}
		}
		if !p.Within.Zero() && sn.Time.After(cutoff) {
			reasons = append(reasons, "within "+p.Within.String())
		}
		for _, r := range rules {
			if why, ok := r.keeps(sn.Time, i, i == len(list)-1); ok {
				reasons = append(reasons, why)
			}
		}
		if len(reasons) > 0 {
			keep = append(keep, Kept{Snapshot: sn, Reasons: reasons})
		} else {
			remove = append(remove, sn)
		}
	}
	return keep, remove
}
