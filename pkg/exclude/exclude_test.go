package exclude

import (
	"errors"
	"strings"
	"testing"
)

// file and dir are the kinds of path a case names.
const (
	file = false
	dir  = true
)

type pathCase struct {
	path  string
	isDir bool
	want  bool
}

// TestGitignoreExamples checks the examples gitignore(5) gives in its
// PATTERN FORMAT and EXAMPLES sections (and Pro Git's example file), each
// with the verdict the documentation states, through the same
// ExcludedPath a backup's walk amounts to.
func TestGitignoreExamples(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns []string
		paths    []pathCase
	}{
		{
			// "The pattern hello.* matches any file or directory whose name
			// begins with hello."
			name: "unanchored name", patterns: []string{"hello.*"},
			paths: []pathCase{{"hello.txt", file, true}, {"a/hello.java", file, true}, {"hello.d", dir, true}, {"ahello.txt", file, false}},
		},
		{
			// "...prepend the pattern with a slash, i.e. /hello.*; the
			// pattern now matches hello.txt, hello.c but not a/hello.java."
			name: "leading slash anchors", patterns: []string{"/hello.*"},
			paths: []pathCase{{"hello.txt", file, true}, {"hello.c", file, true}, {"a/hello.java", file, false}},
		},
		{
			// "foo/ will match a directory foo and paths underneath it, but
			// will not match a regular file or a symbolic link foo."
			name: "trailing slash: directories only", patterns: []string{"foo/"},
			paths: []pathCase{{"foo", dir, true}, {"foo/x", file, true}, {"foo/x/y", file, true}, {"foo", file, false}, {"a/foo", dir, true}},
		},
		{
			// "a pattern doc/frotz/ matches doc/frotz directory, but not
			// a/doc/frotz directory; however frotz/ matches frotz and
			// a/frotz that is a directory."
			name: "doc/frotz/", patterns: []string{"doc/frotz/"},
			paths: []pathCase{{"doc/frotz", dir, true}, {"a/doc/frotz", dir, false}, {"doc/frotz", file, false}},
		},
		{
			name: "frotz/", patterns: []string{"frotz/"},
			paths: []pathCase{{"frotz", dir, true}, {"a/frotz", dir, true}, {"a/frotz", file, false}},
		},
		{
			// "The pattern doc/frotz and /doc/frotz have the same effect":
			// a middle slash anchors already.
			name: "doc/frotz", patterns: []string{"doc/frotz"},
			paths: []pathCase{{"doc/frotz", file, true}, {"doc/frotz", dir, true}, {"a/doc/frotz", file, false}},
		},
		{
			name: "/doc/frotz", patterns: []string{"/doc/frotz"},
			paths: []pathCase{{"doc/frotz", file, true}, {"doc/frotz", dir, true}, {"a/doc/frotz", file, false}},
		},
		{
			// "The pattern foo/*, matches foo/test.json (a regular file),
			// foo/bar (a directory), but it does not match foo/bar/hello.c"
			// (the pattern does not; foo/bar/hello.c is excluded with
			// foo/bar, as TestPatternMatch shows the pattern alone).
			name: "foo/*", patterns: []string{"foo/*"},
			paths: []pathCase{{"foo/test.json", file, true}, {"foo/bar", dir, true}, {"foo", dir, false}, {"a/foo/test.json", file, false}},
		},
		{
			// "/*.c matches cat-file.c but not mozilla-sha1/sha1.c"
			name: "/*.c", patterns: []string{"/*.c"},
			paths: []pathCase{{"cat-file.c", file, true}, {"mozilla-sha1/sha1.c", file, false}},
		},
		{
			// "**/foo matches file or directory foo anywhere, the same as
			// pattern foo."
			name: "**/foo", patterns: []string{"**/foo"},
			paths: []pathCase{{"foo", file, true}, {"foo", dir, true}, {"a/foo", file, true}, {"a/b/foo", dir, true}, {"a/foox", file, false}},
		},
		{
			name: "foo", patterns: []string{"foo"},
			paths: []pathCase{{"foo", file, true}, {"foo", dir, true}, {"a/foo", file, true}, {"a/b/foo", dir, true}, {"a/foox", file, false}},
		},
		{
			// "**/foo/bar matches file or directory bar anywhere that is
			// directly under directory foo."
			name: "**/foo/bar", patterns: []string{"**/foo/bar"},
			paths: []pathCase{{"foo/bar", file, true}, {"x/foo/bar", dir, true}, {"x/y/foo/bar", file, true}, {"foo/x/bar", file, false}, {"bar", file, false}},
		},
		{
			// "abc/** matches all files inside directory abc ... with
			// infinite depth."
			name: "abc/**", patterns: []string{"abc/**"},
			paths: []pathCase{{"abc/x", file, true}, {"abc/x/y", file, true}, {"abc/x", dir, true}, {"abc", dir, false}, {"x/abc/y", file, false}},
		},
		{
			// "a/**/b matches a/b, a/x/b, a/x/y/b and so on."
			name: "a/**/b", patterns: []string{"a/**/b"},
			paths: []pathCase{{"a/b", file, true}, {"a/x/b", file, true}, {"a/x/y/b", dir, true}, {"a/x/y/c", file, false}, {"x/a/b", file, false}},
		},
		{
			// "Other consecutive asterisks are considered regular asterisks."
			name: "a**b", patterns: []string{"a**b"},
			paths: []pathCase{{"ab", file, true}, {"axyb", file, true}, {"x/axb", file, true}},
		},
		{
			// "\!important!.txt" for a pattern that starts with "!".
			name: "escaped !", patterns: []string{`\!important!.txt`},
			paths: []pathCase{{"!important!.txt", file, true}, {"important!.txt", file, false}},
		},
		{
			// "Put a backslash in front of the first hash for patterns that
			// begin with a hash"; a line starting with # is a comment.
			name: "escaped #", patterns: []string{`\#notes`, "#notes2"},
			paths: []pathCase{{"#notes", file, true}, {"#notes2", file, false}, {"notes2", file, false}},
		},
		{
			// "Trailing spaces are ignored unless they are quoted with
			// backslash."
			name: "trailing spaces", patterns: []string{"foo  ", `bar\ `},
			paths: []pathCase{{"foo", file, true}, {"foo  ", file, false}, {"bar ", file, true}, {"bar", file, false}},
		},
		{
			// EXAMPLES: "# exclude everything except directory foo/bar".
			name: "everything but foo/bar", patterns: []string{"/*", "!/foo", "/foo/*", "!/foo/bar"},
			paths: []pathCase{
				{"foo", dir, false}, {"foo/bar", dir, false}, {"foo/bar/x.c", file, false},
				{"foo/baz", dir, true}, {"foo/baz/x.c", file, true}, {"foo/y", file, true}, {"other", dir, true}, {"top.txt", file, true},
			},
		},
		{
			// EXAMPLES: "ignore objects and archives, anywhere in the tree"
			// (*.[oa]), and "ignore generated html files, except foo.html
			// which is maintained by hand".
			name: "html except foo.html", patterns: []string{"*.[oa]", "*.html", "!foo.html"},
			paths: []pathCase{
				{"Documentation/foo.html", file, false}, {"Documentation/gitignore.html", file, true},
				{"file.o", file, true}, {"lib.a", file, true}, {"src/internal.o", file, true}, {"src/internal.c", file, false},
			},
		},
		{
			// "It is not possible to re-include a file if a parent directory
			// of that file is excluded."
			name: "no re-include under an excluded directory", patterns: []string{"build/", "!build/keep.txt", "!keep.txt"},
			paths: []pathCase{{"build/keep.txt", file, true}, {"build", dir, true}, {"keep.txt", file, false}},
		},
		{
			// Pro Git's example .gitignore.
			name: "Pro Git", patterns: []string{"# no .a files", "*.a", "!lib.a", "/TODO", "build/", "doc/*.txt", "doc/**/*.pdf"},
			paths: []pathCase{
				{"x.a", file, true}, {"sub/x.a", file, true}, {"lib.a", file, false}, {"sub/lib.a", file, false},
				{"TODO", file, true}, {"subdir/TODO", file, false},
				{"build", dir, true}, {"a/build/x", file, true},
				{"doc/notes.txt", file, true}, {"doc/server/arch.txt", file, false},
				{"doc/x.pdf", file, true}, {"doc/server/x.pdf", file, true}, {"doc/a/b/x.pdf", file, true},
			},
		},
		{
			// "*" matches anything except "/", "?" any one character except
			// "/", "[]" one character in a selected range.
			name: "wildcards", patterns: []string{"/a?c", "/r[0-9][!a-c]", "/*.log", "/[[:upper:]]*", `/lit\*`},
			paths: []pathCase{
				{"abc", file, true}, {"ac", file, false}, {"a/c", file, false}, {"aéc", file, true},
				{"r1d", file, true}, {"r1a", file, false}, {"rxd", file, false},
				{"x.log", file, true}, {"d/x.log", file, false},
				{"Readme", file, true}, {"readme", file, false},
				{"lit*", file, true}, {"litx", file, false},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.patterns)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.paths {
				if got := m.ExcludedPath(c.path, c.isDir); got != c.want {
					kind := "file"
					if c.isDir {
						kind = "directory"
					}
					t.Errorf("%q: %s %q excluded = %v, want %v", tc.patterns, kind, c.path, got, c.want)
				}
			}
		})
	}
}

// TestPatternMatch checks single patterns on single paths, without the
// directories above them.
func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		path    string
		isDir   bool
		want    bool
	}{
		{"foo/*", "foo/bar/hello.c", file, false}, // gitignore(5)
		{"foo/*", "foo/bar", dir, true},
		{"*", "a/b/c", file, true},
		{"**", "a/b/c", file, true},
		{"a/**", "a", dir, false},
		{"a/**/", "a/b", file, false},
		{"a/**/", "a/b/c", dir, true},
		{"**/", "x", dir, true},
		{"**/", "x", file, false},
		{"x/**/**/y", "x/y", file, true},
		{"x/**/**/y", "x/a/b/y", file, true},
		{"*.txt", "dir.txt/file", file, false},
		{"[]]", "]", file, true},
		{"[!]]", "]", file, false},
		{"[a-]", "-", file, true},
		{"[\\]]", "]", file, true},
		{"*a*b*c*", "xaxbxcx", file, true},
		{"*a*b*c*", "xaxcxbx", file, false},
		{"caf?", "caf\xe9", file, true}, // one byte of a name that is not UTF-8 text
		{"caf[!a]", "caf\xe9", file, true},
		{"caf[[:alpha:]]", "caf\xe9", file, false},
	} {
		p, err := Compile(tc.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.pattern, err)
		}
		if got := p.Match(tc.path, tc.isDir); got != tc.want {
			t.Errorf("%q.Match(%q, dir=%v) = %v, want %v", tc.pattern, tc.path, tc.isDir, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, line := range []string{"/", "!", "!/", "a//b", "abc[", "a[!", `trailing\`, "[[:nope:]]", "[z-a]"} {
		if p, err := Compile(line); !errors.Is(err, ErrPattern) {
			t.Errorf("Compile(%q) = %v, %v; want ErrPattern", line, p, err)
		}
	}
	for _, line := range []string{"", "   ", "# a comment"} {
		if p, err := Compile(line); p != nil || err != nil {
			t.Errorf("Compile(%q) = %v, %v; want no pattern", line, p, err)
		}
	}
	if _, err := New([]string{"ok", "bad["}); err == nil || !strings.Contains(err.Error(), `"bad["`) {
		t.Errorf("New with a bad pattern: %v, want an error naming it", err)
	}
}

func TestReadLines(t *testing.T) {
	lines, err := ReadLines(strings.NewReader("# comment\r\n*.o\r\n\n/build/\nlast"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "|") != "# comment|*.o||/build/|last" {
		t.Errorf("ReadLines = %q", lines)
	}
	m, err := New(lines)
	if err != nil || len(m.Patterns()) != 3 {
		t.Fatalf("New(%q) = %v patterns, %v; want 3", lines, len(m.Patterns()), err)
	}
	if _, err := ReadLines(strings.NewReader(strings.Repeat("x", 70<<10))); err == nil {
		t.Error("a 70 KiB line was read")
	}
	var none *Matcher
	if !none.Empty() || none.Excluded("x", false) {
		t.Error("a nil Matcher excludes")
	}
}

func BenchmarkExcluded(b *testing.B) {
	m, _ := New([]string{"*.o", "node_modules/", "/build/", "**/cache/**", "!keep.o", "doc/**/*.pdf"})
	for b.Loop() {
		m.Excluded("src/pkg/module/file_name.go", false)
	}
}
