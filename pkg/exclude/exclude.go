// Package exclude decides which paths of a directory tree a backup leaves
// out, from patterns written as in a .gitignore file (gitignore(5),
// "PATTERN FORMAT"), matched against paths relative to the backed-up
// directory:
//
//   - A blank line matches nothing; a line starting with "#" is a comment
//     ("\#" for a pattern that starts with "#"). Trailing spaces are
//     ignored unless escaped with a backslash ("foo\ ").
//   - "!" negates: a path a previous pattern excluded is included again
//     ("\!" for a pattern that starts with "!"). The last pattern that
//     matches a path decides. A path under an excluded directory stays
//     excluded whatever a later pattern says: the walk never enters the
//     directory, as git never does.
//   - A pattern with a "/" at its start or in its middle is anchored: it
//     matches paths from the backed-up directory down ("/tmp", "doc/frotz"
//     and "/doc/frotz" alike). A pattern without one matches a name at
//     any depth ("*.o", "node_modules").
//   - A trailing "/" makes the pattern match directories only ("cache/").
//   - "*" matches anything but "/", "?" one character but "/", "[a-z]",
//     "[!a-z]" (or "[^a-z]") and "[[:digit:]]" one character of (or not
//     of) a set; a backslash makes the next character literal.
//   - "**" as a whole path element matches any number of them: "**/foo"
//     matches foo anywhere, "a/**/b" matches a/b, a/x/b, a/x/y/b, and a
//     trailing "/**" everything inside ("abc/**" matches abc/x and
//     abc/x/y, not abc). Other consecutive asterisks are plain asterisks.
//
// Paths are matched as the bytes of their names (a name need not be UTF-8
// text; "?" matches one character of a name that is, and one byte of one
// that is not).
package exclude

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ErrPattern is wrapped by every error about a pattern.
var ErrPattern = errors.New("exclude: invalid pattern")

// Pattern is one compiled pattern.
type Pattern struct {
	text     string // as written (trailing unescaped spaces removed)
	negate   bool   // "!pattern": include what matches
	dirOnly  bool   // "pattern/": match directories only
	anchored bool   // a "/" at the start or in the middle
	// elems are the pattern's path elements (the whole pattern when it is
	// not anchored), escapes kept; "**" is any number of elements.
	elems []string
}

// Compile compiles one line of a pattern file. It returns nil, and no
// error, for a line that holds no pattern: blank, or a comment.
func Compile(line string) (*Pattern, error) {
	line = trimTrailingSpaces(line)
	if line == "" || line[0] == '#' {
		return nil, nil
	}
	p := &Pattern{text: line}
	s := line
	// "\!" and "\#" need nothing more: an escaped character matches itself.
	if s[0] == '!' {
		p.negate, s = true, s[1:]
	}
	if strings.HasSuffix(s, "/") {
		p.dirOnly, s = true, strings.TrimSuffix(s, "/")
	}
	if strings.HasPrefix(s, "/") {
		p.anchored, s = true, s[1:]
	}
	if s == "" {
		return nil, fmt.Errorf("%w %q: it names no path", ErrPattern, line)
	}
	if strings.Contains(s, "/") {
		p.anchored = true
	}
	if p.anchored {
		p.elems = strings.Split(s, "/")
	} else {
		p.elems = []string{s}
	}
	for _, e := range p.elems {
		if e == "" {
			return nil, fmt.Errorf("%w %q: an empty path element (\"//\")", ErrPattern, line)
		}
		if err := checkGlob(e); err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrPattern, line, err)
		}
	}
	return p, nil
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.text }

// Negated reports whether the pattern starts with "!": paths it matches
// are included.
func (p *Pattern) Negated() bool { return p.negate }

// trimTrailingSpaces removes the spaces at the end of line that no
// backslash escapes.
func trimTrailingSpaces(line string) string {
	end := len(line)
	for end > 0 && line[end-1] == ' ' {
		// An odd run of backslashes before this space escapes it.
		bs := 0
		for i := end - 2; i >= 0 && line[i] == '\\'; i-- {
			bs++
		}
		if bs%2 == 1 {
			break
		}
		end--
	}
	return line[:end]
}

// Match reports whether the pattern matches path itself, a slash-separated
// path relative to the tree's root ("a/b/c", never "." or with a leading
// or trailing slash); isDir says whether it is a directory. It says
// nothing of the directories above path: see Matcher.ExcludedPath.
func (p *Pattern) Match(path string, isDir bool) bool {
	if p.dirOnly && !isDir {
		return false
	}
	if !p.anchored {
		return matchGlob(p.elems[0], path[strings.LastIndexByte(path, '/')+1:])
	}
	return matchElems(p.elems, path)
}

// matchElems matches pattern elements against the rest of a path.
func matchElems(elems []string, path string) bool {
	if len(elems) == 0 {
		return path == ""
	}
	if elems[0] == "**" {
		rest := elems[1:]
		if len(rest) == 0 {
			return path != "" // a trailing "/**": one element or more
		}
		for { // zero elements, then one more each time round
			if matchElems(rest, path) {
				return true
			}
			i := strings.IndexByte(path, '/')
			if i < 0 {
				return false
			}
			path = path[i+1:]
		}
	}
	name, next, more := strings.Cut(path, "/")
	if path == "" || !matchGlob(elems[0], name) {
		return false
	}
	if !more {
		return len(elems) == 1
	}
	return matchElems(elems[1:], next)
}

// Matcher applies a list of patterns in order: the last one that matches
// a path decides whether it is excluded.
type Matcher struct {
	patterns []*Pattern
}

// New compiles patterns, one line of a pattern file each (blank lines and
// comments are skipped). An invalid pattern is an error naming it.
func New(lines []string) (*Matcher, error) {
	m := &Matcher{}
	for _, l := range lines {
		p, err := Compile(l)
		if err != nil {
			return nil, err
		}
		if p != nil {
			m.patterns = append(m.patterns, p)
		}
	}
	return m, nil
}

// Patterns returns the compiled patterns, in order.
func (m *Matcher) Patterns() []*Pattern {
	if m == nil {
		return nil
	}
	return m.patterns
}

// Empty reports whether the matcher has no pattern (it excludes nothing).
func (m *Matcher) Empty() bool { return m == nil || len(m.patterns) == 0 }

// Excluded reports whether the patterns exclude path itself (see
// Pattern.Match), taking for granted that no directory above it is
// excluded: what a walk that does not enter excluded directories needs.
func (m *Matcher) Excluded(path string, isDir bool) bool {
	if m == nil {
		return false
	}
	for i := len(m.patterns) - 1; i >= 0; i-- {
		if p := m.patterns[i]; p.Match(path, isDir) {
			return !p.negate
		}
	}
	return false
}

// ExcludedPath reports whether path is left out of a backup: a directory
// above it is excluded, or it is (Excluded).
func (m *Matcher) ExcludedPath(path string, isDir bool) bool {
	for i := 0; i < len(path); i++ {
		if path[i] == '/' && m.Excluded(path[:i], true) {
			return true
		}
	}
	return m.Excluded(path, isDir)
}

// ReadLines reads a pattern file: its lines, without line ends ("\n" or
// "\r\n"). New skips the blank lines and comments among them. A line
// longer than 64 KiB is an error.
func ReadLines(r io.Reader) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}
	return lines, sc.Err()
}

// checkGlob reports what is wrong with one element of a pattern: an
// unterminated bracket expression or a trailing backslash.
func checkGlob(g string) error {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '\\':
			if i+1 == len(g) {
				return errors.New("it ends in a backslash that escapes nothing")
			}
			i++
		case '[':
			end, ok := classEnd(g, i)
			if !ok {
				return fmt.Errorf("%q opens a bracket expression that does not close", g[i:])
			}
			if _, err := parseClass(g[i+1 : end]); err != nil {
				return err
			}
			i = end
		}
	}
	return nil
}

// matchGlob matches one path element (no "/") against one pattern
// element: "*" any run of characters, "?" one, "[...]" one of a set,
// "\c" the character c. A "*" that fails to match is retried one
// character further, once per star: linear backtracking.
func matchGlob(g, name string) bool {
	var starG, starN = -1, 0
	gi, ni := 0, 0
	for ni < len(name) || gi < len(g) {
		if gi < len(g) {
			switch c := g[gi]; c {
			case '*':
				for gi < len(g) && g[gi] == '*' {
					gi++
				}
				starG, starN = gi, ni
				continue
			case '?':
				if ni < len(name) {
					_, w := utf8.DecodeRuneInString(name[ni:])
					gi, ni = gi+1, ni+w
					continue
				}
			case '[':
				if ni < len(name) {
					end, _ := classEnd(g, gi)
					r, w := utf8.DecodeRuneInString(name[ni:])
					if w == 1 && r == utf8.RuneError {
						r = rune(name[ni]) | rawByte
					}
					set, _ := parseClass(g[gi+1 : end])
					if set.matches(r) {
						gi, ni = end+1, ni+w
						continue
					}
				}
			case '\\':
				if ni < len(name) && gi+1 < len(g) && name[ni] == g[gi+1] {
					gi, ni = gi+2, ni+1
					continue
				}
			default:
				if ni < len(name) && name[ni] == c {
					gi, ni = gi+1, ni+1
					continue
				}
			}
		}
		// A mismatch: let the last star take one more character.
		if starG >= 0 && starN < len(name) {
			_, w := utf8.DecodeRuneInString(name[starN:])
			starN += w
			gi, ni = starG, starN
			continue
		}
		return false
	}
	return true
}

// rawByte marks a byte of a name that is not UTF-8 text, so that it
// matches no character of a set (only a negated set).
const rawByte = 1 << 30

// classEnd returns the index of the "]" that closes the bracket
// expression opening at g[open]. A "]" right after "[", "[!" or "[^" is a
// member, not the end; so is a "]" inside "[:...:]".
func classEnd(g string, open int) (int, bool) {
	i := open + 1
	if i < len(g) && (g[i] == '!' || g[i] == '^') {
		i++
	}
	if i < len(g) && g[i] == ']' {
		i++
	}
	for i < len(g) {
		switch {
		case g[i] == '\\':
			i += 2
			continue
		case strings.HasPrefix(g[i:], "[:"):
			if j := strings.Index(g[i+2:], ":]"); j >= 0 {
				i += 2 + j + 2
				continue
			}
		case g[i] == ']':
			return i, true
		}
		i++
	}
	return 0, false
}

// class is a parsed bracket expression.
type class struct {
	negate  bool
	ranges  [][2]rune
	classes []func(rune) bool
}

func (c class) matches(r rune) bool {
	in := false
	if r&rawByte == 0 {
		for _, rg := range c.ranges {
			if rg[0] <= r && r <= rg[1] {
				in = true
				break
			}
		}
		for _, f := range c.classes {
			if !in && f(r) {
				in = true
			}
		}
	}
	return in != c.negate
}

// posixClasses are the character classes a bracket expression may name,
// for ASCII as git's wildmatch reads them.
var posixClasses = map[string]func(rune) bool{
	"alnum":  func(r rune) bool { return isAlpha(r) || isDigit(r) },
	"alpha":  isAlpha,
	"blank":  func(r rune) bool { return r == ' ' || r == '\t' },
	"cntrl":  func(r rune) bool { return r < 0x20 || r == 0x7f },
	"digit":  isDigit,
	"graph":  func(r rune) bool { return r > 0x20 && r < 0x7f },
	"lower":  func(r rune) bool { return 'a' <= r && r <= 'z' },
	"print":  func(r rune) bool { return r >= 0x20 && r < 0x7f },
	"punct":  func(r rune) bool { return r > 0x20 && r < 0x7f && !isAlpha(r) && !isDigit(r) },
	"space":  func(r rune) bool { return r == ' ' || '\t' <= r && r <= '\r' },
	"upper":  func(r rune) bool { return 'A' <= r && r <= 'Z' },
	"xdigit": func(r rune) bool { return isDigit(r) || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F' },
}

func isAlpha(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }
func isDigit(r rune) bool { return '0' <= r && r <= '9' }

// parseClass parses the inside of a bracket expression (between "[" and
// the closing "]").
func parseClass(s string) (class, error) {
	var c class
	if s != "" && (s[0] == '!' || s[0] == '^') {
		c.negate, s = true, s[1:]
	}
	for s != "" {
		if strings.HasPrefix(s, "[:") {
			if j := strings.Index(s[2:], ":]"); j >= 0 {
				name := s[2 : 2+j]
				f, ok := posixClasses[name]
				if !ok {
					return c, fmt.Errorf("unknown character class [:%s:]", name)
				}
				c.classes = append(c.classes, f)
				s = s[2+j+2:]
				continue
			}
		}
		lo, n := classChar(s)
		s = s[n:]
		hi := lo
		// "a-z" is a range; a "-" first or last is itself. A "]" first is
		// itself too (classEnd let it in).
		if len(s) >= 2 && s[0] == '-' {
			var m int
			hi, m = classChar(s[1:])
			s = s[1+m:]
			if hi < lo {
				return c, fmt.Errorf("range %c-%c is reversed", lo, hi)
			}
		}
		c.ranges = append(c.ranges, [2]rune{lo, hi})
	}
	return c, nil
}

// classChar reads one member character of a bracket expression, which may
// be escaped, and returns it and the bytes it took.
func classChar(s string) (rune, int) {
	if s[0] == '\\' && len(s) > 1 {
		r, w := utf8.DecodeRuneInString(s[1:])
		return r, 1 + w
	}
	r, w := utf8.DecodeRuneInString(s)
	return r, w
}
