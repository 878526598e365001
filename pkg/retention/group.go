package retention

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// GroupBy chooses the fields that split snapshots into groups before a
// policy is applied, to each group on its own, as restic's --group-by
// does. Snapshots share a group when they agree on every chosen field
// (on the set of tags, in any order). The zero GroupBy puts all snapshots
// in one group; DefaultGroupBy is what forget should use unless told
// otherwise, so that one source's snapshots never count against another's.
type GroupBy struct {
	Host, Path, Tags bool
}

// DefaultGroupBy groups snapshots by source: host and path.
var DefaultGroupBy = GroupBy{Host: true, Path: true}

// ParseGroupBy parses a comma-separated list of fields, as restic's
// --group-by takes it: "host", "path" and "tags" (also "hosts", "paths" and
// "tag"), such as "host,path". Empty items are skipped, so "" is the zero
// GroupBy (one group). Errors match ErrInvalid.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "":
		case "host", "hosts":
			g.Host = true
		case "path", "paths":
			g.Path = true
		case "tag", "tags":
			g.Tags = true
		default:
			return GroupBy{}, fmt.Errorf("%w: group by %q: unknown field %q (want host, path or tags)", ErrInvalid, s, f)
		}
	}
	return g, nil
}

// String returns g in the form ParseGroupBy reads: "host,path", or "" for
// one group.
func (g GroupBy) String() string {
	var fs []string
	if g.Host {
		fs = append(fs, "host")
	}
	if g.Path {
		fs = append(fs, "path")
	}
	if g.Tags {
		fs = append(fs, "tags")
	}
	return strings.Join(fs, ",")
}

// Group is the policy's decision on one group of snapshots.
type Group struct {
	// By is how the snapshots were grouped. Host, Path and Tags (sorted)
	// are what the group's snapshots share in the fields By chooses, and
	// empty for the others.
	By   GroupBy
	Host string
	Path string
	Tags []string

	// Keep holds the snapshots to keep, newest first, each with why.
	Keep []Kept
	// Remove holds the snapshots to remove, newest first.
	Remove []Snapshot
}

// Name describes the group for people, as restic does: "host db1, path
// /srv, tags [a, b]" for the fields the group was chosen by; "all
// snapshots" when snapshots were not grouped.
func (g Group) Name() string {
	var parts []string
	if g.By.Host {
		parts = append(parts, "host "+g.Host)
	}
	if g.By.Path {
		parts = append(parts, "path "+g.Path)
	}
	if g.By.Tags {
		parts = append(parts, "tags ["+strings.Join(g.Tags, ", ")+"]")
	}
	if len(parts) == 0 {
		return "all snapshots"
	}
	return strings.Join(parts, ", ")
}

// group splits snaps into groups by g, in a fixed order (by host, path,
// then tags), each group's snapshots newest first. Remove holds the
// members until the policy decides; snaps is not modified.
func group(snaps []Snapshot, by GroupBy) []Group {
	var groups []Group
	index := map[string]int{}
	for _, sn := range snaps {
		var g Group
		g.By = by
		if by.Host {
			g.Host = sn.Host
		}
		if by.Path {
			g.Path = sn.Path
		}
		if by.Tags {
			g.Tags = slices.Sorted(slices.Values(sn.Tags))
		}
		key := fmt.Sprintf("%q %q %q", g.Host, g.Path, g.Tags)
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, g)
		}
		groups[i].Remove = append(groups[i].Remove, sn)
	}
	slices.SortFunc(groups, func(a, b Group) int {
		return cmp.Or(
			strings.Compare(a.Host, b.Host),
			strings.Compare(a.Path, b.Path),
			slices.Compare(a.Tags, b.Tags),
		)
	})
	for _, g := range groups {
		slices.SortStableFunc(g.Remove, newestFirst)
	}
	return groups
}

// newestFirst orders snapshots newest first, equal times by ID.
func newestFirst(a, b Snapshot) int {
	return cmp.Or(b.Time.Compare(a.Time), strings.Compare(a.ID, b.ID))
}
