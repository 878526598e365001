package manifest

import (
	"path"
	"slices"
	"strings"
)

// Filter picks snapshots by what describes them, as restic's --tag, --host
// and --path do. A snapshot matches when it matches every field that is
// set: one of Hosts, one of Paths, and one of Tags. A Tags entry is a
// comma-separated list of tags that the snapshot must all carry ("prod,db");
// the empty entry matches snapshots without tags. The zero Filter matches
// every snapshot.
type Filter struct {
	Tags  []string `json:"tags,omitempty"`
	Hosts []string `json:"hosts,omitempty"`
	Paths []string `json:"paths,omitempty"`
}

// Empty reports whether the filter matches every snapshot.
func (f *Filter) Empty() bool {
	return f == nil || len(f.Tags) == 0 && len(f.Hosts) == 0 && len(f.Paths) == 0
}

// Match reports whether s matches the filter.
func (f *Filter) Match(s *Snapshot) bool {
	if f.Empty() {
		return true
	}
	if len(f.Hosts) > 0 && !slices.Contains(f.Hosts, s.Host) {
		return false
	}
	if len(f.Paths) > 0 && !slices.ContainsFunc(f.Paths, func(p string) bool { return cleanPath(p) == cleanPath(s.Path) }) {
		return false
	}
	if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(entry string) bool { return hasTags(s.Tags, entry) }) {
		return false
	}
	return true
}

// String describes the filter for people: `tags "a,b" or "c", host "h",
// path "/srv"`; "" for the empty filter.
func (f *Filter) String() string {
	if f.Empty() {
		return ""
	}
	var parts []string
	add := func(one, many string, vals []string) {
		if len(vals) == 0 {
			return
		}
		q := make([]string, len(vals))
		for i, v := range vals {
			q[i] = `"` + v + `"`
		}
		name := one
		if len(vals) > 1 {
			name = many
		}
		parts = append(parts, name+" "+strings.Join(q, " or "))
	}
	add("tag", "tags", f.Tags)
	add("host", "hosts", f.Hosts)
	add("path", "paths", f.Paths)
	return strings.Join(parts, ", ")
}

// hasTags reports whether have holds every tag of the comma-separated
// entry; the empty entry matches only an empty have.
func hasTags(have []string, entry string) bool {
	want := SplitTags(entry)
	if len(want) == 0 {
		return len(have) == 0
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// SplitTags splits a comma-separated list of tags, dropping empty items
// and space around each.
func SplitTags(s string) []string {
	var tags []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

func cleanPath(p string) string {
	if p == "" {
		return p
	}
	return path.Clean(p)
}
