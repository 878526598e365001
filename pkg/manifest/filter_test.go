package manifest

import "testing"

func TestFilter(t *testing.T) {
	snaps := map[string]*Snapshot{
		"untagged": {Host: "db1", Path: "/srv"},
		"nightly":  {Host: "db1", Path: "/srv/", Tags: []string{"nightly"}},
		"both":     {Host: "web1", Path: "/var/www", Tags: []string{"db", "nightly"}},
	}
	for _, tc := range []struct {
		f    *Filter
		want []string
	}{
		{nil, []string{"untagged", "nightly", "both"}},
		{&Filter{}, []string{"untagged", "nightly", "both"}},
		{&Filter{Tags: []string{"nightly"}}, []string{"nightly", "both"}},
		{&Filter{Tags: []string{"nightly,db"}}, []string{"both"}},
		{&Filter{Tags: []string{"db, nightly"}}, []string{"both"}},
		{&Filter{Tags: []string{""}}, []string{"untagged"}},
		{&Filter{Tags: []string{"", "db"}}, []string{"untagged", "both"}},
		{&Filter{Hosts: []string{"db1"}}, []string{"untagged", "nightly"}},
		{&Filter{Hosts: []string{"db1", "web1"}, Paths: []string{"/srv"}}, []string{"untagged", "nightly"}},
		{&Filter{Hosts: []string{"web1"}, Paths: []string{"/srv"}}, nil},
		{&Filter{Hosts: []string{"db1"}, Tags: []string{"nightly"}}, []string{"nightly"}},
	} {
		for name, s := range snaps {
			want := false
			for _, w := range tc.want {
				want = want || w == name
			}
			if got := tc.f.Match(s); got != want {
				t.Errorf("filter %s on %s: %v, want %v", tc.f, name, got, want)
			}
		}
	}
	f := &Filter{Tags: []string{"a,b", "c"}, Hosts: []string{"h"}, Paths: []string{"/p", "/q"}}
	if s := f.String(); s != `tags "a,b" or "c", host "h", paths "/p" or "/q"` {
		t.Errorf("String = %s", s)
	}
}
