package source

import (
	"bytes"
	"context"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/exclude"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// ScanOptions say what a scan leaves out of a tree. An entry left out is
// neither listed nor opened, and nothing under it is looked at: an
// excluded directory is never read, an excluded file never opened, so
// neither can raise a warning. The zero ScanOptions leave out nothing.
type ScanOptions struct {
	// Exclude holds gitignore-style patterns (package exclude), matched
	// against paths relative to the root.
	Exclude *exclude.Matcher
	// ExcludeCaches leaves out what a directory holding a cache directory
	// tag (CacheTagName, starting with CacheTagSignature) holds, but the
	// tag: the directory and its tag are listed.
	ExcludeCaches bool
	// ExcludeLargerThan, when positive, leaves out regular files larger
	// than this many bytes.
	ExcludeLargerThan int64
	// OneFileSystem leaves out what lies on another filesystem than the
	// root: a directory on which one is mounted is listed, empty.
	OneFileSystem bool
	// SkipDirs are directories to leave out wherever they appear in the
	// tree, however reached (compared by device and inode): the
	// repository a backup writes to. One that does not exist is ignored.
	SkipDirs []string
}

// The Cache Directory Tagging Specification (https://bford.info/cachedir/):
// a directory is a cache when it holds a regular file (not a symlink)
// named CACHEDIR.TAG whose first 43 bytes are the signature.
const (
	CacheTagName      = "CACHEDIR.TAG"
	CacheTagSignature = "Signature: 8a477f597d28d172789f06886806bc55"
)

// ScanResult says what a scan left out.
type ScanResult struct {
	// Excluded counts the entries left out: an excluded directory counts
	// once, whatever it holds.
	Excluded int
}

// ScanTreeWith is ScanTree leaving out what opts say.
func ScanTreeWith(ctx context.Context, root string, opts ScanOptions, emit func(manifest.Entry) error, warn func(string)) (ScanResult, error) {
	s := &scanner{ctx: ctx, emit: emit, warn: warn, links: make(map[[2]uint64]string), opts: opts}
	for _, d := range opts.SkipDirs {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if s.skip == nil {
				s.skip = make(map[[2]uint64]bool)
			}
			s.skip[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	err := s.scan(root)
	return ScanResult{Excluded: s.excluded}, err
}

// selecting reports whether the scan leaves anything out, so that a scan
// that does not pays nothing for it.
func (s *scanner) selecting() bool {
	o := &s.opts
	return !o.Exclude.Empty() || o.ExcludeCaches || o.ExcludeLargerThan > 0 || o.OneFileSystem || len(s.skip) > 0
}

// verdict is what the patterns say of a path before its type is known.
type verdict int

const (
	keep     verdict = iota // not excluded, file or directory
	drop                    // excluded, file or directory
	needType                // excluded only if a directory, or only if not
)

// byPattern applies the exclude patterns to raw, the child's path relative
// to the root as the bytes of its names, so that most entries are decided
// without a stat.
func (s *scanner) byPattern(raw string) verdict {
	m := s.opts.Exclude
	if m.Empty() {
		return keep
	}
	asFile, asDir := m.Excluded(raw, false), m.Excluded(raw, true)
	switch {
	case asFile && asDir:
		return drop
	case !asFile && !asDir:
		return keep
	}
	return needType
}

// leaveOut decides, once its status is known, whether the child at raw is
// left out.
func (s *scanner) leaveOut(raw string, v verdict, st stat) bool {
	isDir := st.mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case v == needType && s.opts.Exclude.Excluded(raw, isDir):
		return true
	case isDir && s.skip[[2]uint64{st.dev, st.ino}]:
		return true
	case s.opts.OneFileSystem && !isDir && st.dev != s.rootDev:
		return true // a file bind-mounted from another filesystem
	case s.opts.ExcludeLargerThan > 0 && st.mode&unix.S_IFMT == unix.S_IFREG && st.size > s.opts.ExcludeLargerThan:
		return true
	}
	return false
}

// mountPoint reports whether a directory of the tree lies on another
// filesystem than the root, and the scan must not enter it.
func (s *scanner) mountPoint(st stat) bool {
	return s.opts.OneFileSystem && st.dev != s.rootDev
}

// cacheNames returns the names of a directory the scan looks at: all of
// them, or, in a tagged cache directory with ExcludeCaches, only the tag.
func (s *scanner) cacheNames(fd int, names []string) []string {
	if !s.opts.ExcludeCaches || len(names) < 2 {
		return names
	}
	for _, n := range names {
		if n == CacheTagName {
			if isCacheTag(fd) {
				s.excluded += len(names) - 1
				return []string{CacheTagName}
			}
			break
		}
	}
	return names
}

// isCacheTag reports whether the directory dirFD holds a valid cache
// directory tag: a regular file CacheTagName (never followed through a
// symlink, never waited on as a FIFO) starting with CacheTagSignature.
func isCacheTag(dirFD int) bool {
	var st unix.Stat_t
	if unix.Fstatat(dirFD, CacheTagName, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	fd, err := unix.Openat(dirFD, CacheTagName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	buf := make([]byte, len(CacheTagSignature))
	n, err := preadFull(fd, buf, 0)
	return err == nil && n == len(buf) && bytes.Equal(buf, []byte(CacheTagSignature))
}
