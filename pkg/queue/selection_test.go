package queue

import (
	"slices"
	"strings"
	"testing"
)

// TestSelectionInMessages decodes the selection and labels where clients
// and the fleet send them: flat in the request's JSON object.
func TestSelectionInMessages(t *testing.T) {
	var req BackupRequest
	err := Decode([]byte(`{"v":1,"source":{"host":"db1","path":"/srv"},"repo":"/r","exclude":["*.o","!keep.o"],`+
		`"exclude_caches":true,"exclude_larger_than":1048576,"one_file_system":true,"tags":["b","a"],"host":"web1"}`), &req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(req.Exclude, []string{"*.o", "!keep.o"}) || !req.ExcludeCaches || req.ExcludeLargerThan != 1<<20 || !req.OneFileSystem ||
		req.Host != "web1" || req.Source.Host != "db1" || req.Selection.Empty() {
		t.Errorf("decoded %+v", req)
	}
	if err := req.Selection.Check(); err != nil {
		t.Error(err)
	}
	if err := req.Labels.Normalize(); err != nil || !slices.Equal(req.Tags, []string{"a", "b"}) {
		t.Errorf("Normalize: %v, tags %q", err, req.Tags)
	}
	if d := req.Selection.Describe(); d != `exclude "*.o", exclude "!keep.o", caches, files over 1048576 bytes, other filesystems` {
		t.Errorf("Describe = %q", d)
	}
	var scan ScanTree
	if err := Decode(Encode(&ScanTree{V: WorkVersion, JobID: "j", Path: "/srv", Selection: req.Selection, Repo: "/r"}), &scan); err != nil ||
		!slices.Equal(scan.Exclude, req.Exclude) || scan.Repo != "/r" {
		t.Errorf("ScanTree round trip: %+v, %v", scan, err)
	}
	var none Selection
	if !none.Empty() || none.Describe() != "" {
		t.Error("the zero Selection leaves something out")
	}
	for _, bad := range []Selection{{Exclude: []string{"x["}}, {ExcludeLargerThan: -1}, {Exclude: make([]string, MaxExcludes+1)}} {
		if bad.Check() == nil {
			t.Errorf("%+v passed Check", bad)
		}
	}
}

func TestCheckTag(t *testing.T) {
	for _, ok := range []string{"nightly", "prod db", "ünïcödé", "a=b:c", strings.Repeat("x", MaxTagLen)} {
		if err := CheckTag(ok); err != nil {
			t.Errorf("CheckTag(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a,b", " a", "a ", "a\nb", "\xff", strings.Repeat("x", MaxTagLen+1)} {
		if CheckTag(bad) == nil {
			t.Errorf("CheckTag(%q) passed", bad)
		}
	}
	l := Labels{Host: "no spaces"}
	if l.Normalize() == nil {
		t.Error("a host with spaces passed")
	}
	l = Labels{Tags: make([]string, MaxTags+1)}
	for i := range l.Tags {
		l.Tags[i] = strings.Repeat("t", i+1)
	}
	if l.Normalize() == nil {
		t.Error("too many tags passed")
	}
}
