package queue

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bulkbackup/bulkbackup/pkg/exclude"
)

// Selection says which entries of a directory tree a files-mode backup
// leaves out. The zero Selection leaves out nothing (but the repository
// itself, when it lies inside the tree). BackupRequest, Schedule,
// ScheduleAddRequest and the ScanTree work item embed it, so its fields
// appear in their JSON objects.
type Selection struct {
	// Exclude holds patterns in gitignore's syntax (package exclude),
	// matched against paths relative to the backed-up directory, applied
	// in order: the last that matches a path decides, and "!" includes
	// again. A client reads an exclude file itself and sends its lines.
	Exclude []string `json:"exclude,omitempty"`
	// ExcludeCaches leaves out what a directory tagged as a cache holds
	// (a regular file CACHEDIR.TAG that starts with the signature of the
	// Cache Directory Tagging Specification), keeping the directory and
	// its tag, so that a restore recreates it, still tagged, empty.
	ExcludeCaches bool `json:"exclude_caches,omitempty"`
	// ExcludeLargerThan, when positive, leaves out regular files larger
	// than this many bytes.
	ExcludeLargerThan int64 `json:"exclude_larger_than,omitempty"`
	// OneFileSystem leaves out what lies on other filesystems than the
	// backed-up directory: a mount point is kept, as an empty directory.
	OneFileSystem bool `json:"one_file_system,omitempty"`
}

// MaxExcludes bounds the patterns of one request, so that it stays a small
// message.
const MaxExcludes = 1000

// Empty reports whether the selection leaves nothing out.
func (s *Selection) Empty() bool {
	return len(s.Exclude) == 0 && !s.ExcludeCaches && s.ExcludeLargerThan <= 0 && !s.OneFileSystem
}

// Check validates the selection: every pattern compiles, the size is not
// negative.
func (s *Selection) Check() error {
	_, err := s.Matcher()
	if err != nil {
		return err
	}
	if s.ExcludeLargerThan < 0 {
		return fmt.Errorf("exclude_larger_than %d must not be negative", s.ExcludeLargerThan)
	}
	return nil
}

// Matcher compiles the exclude patterns.
func (s *Selection) Matcher() (*exclude.Matcher, error) {
	if len(s.Exclude) > MaxExcludes {
		return nil, fmt.Errorf("%d exclude patterns: at most %d", len(s.Exclude), MaxExcludes)
	}
	return exclude.New(s.Exclude)
}

// Describe lists what the selection leaves out, for people: "exclude
// "*.o", caches, files over 1048576 bytes, other filesystems"; "" for none.
func (s *Selection) Describe() string {
	var parts []string
	for _, p := range s.Exclude {
		parts = append(parts, fmt.Sprintf("exclude %q", p))
	}
	if s.ExcludeCaches {
		parts = append(parts, "caches")
	}
	if s.ExcludeLargerThan > 0 {
		parts = append(parts, fmt.Sprintf("files over %d bytes", s.ExcludeLargerThan))
	}
	if s.OneFileSystem {
		parts = append(parts, "other filesystems")
	}
	return strings.Join(parts, ", ")
}

// Labels are what a backup records in its snapshot, besides its source,
// to find the snapshot by later. BackupRequest, Schedule and
// ScheduleAddRequest embed them.
type Labels struct {
	// Tags are recorded in the snapshot (manifest.Snapshot.Tags), sorted
	// and each once. See CheckTag.
	Tags []string `json:"tags,omitempty"`
	// Host, if set, is the host recorded in the snapshot instead of the
	// source's host (the reader's --host), and the host whose snapshots an
	// incremental backup starts from.
	Host string `json:"host,omitempty"`
}

// MaxTags bounds a snapshot's tags; MaxTagLen one tag's bytes.
const (
	MaxTags   = 64
	MaxTagLen = 128
)

// CheckTag returns an error unless tag can be a snapshot's tag: 1 to
// MaxTagLen bytes of UTF-8 text without a comma (a filter's "a,b" means
// both tags), control characters, or space at either end.
func CheckTag(tag string) error {
	switch {
	case tag == "":
		return fmt.Errorf("empty tag")
	case len(tag) > MaxTagLen:
		return fmt.Errorf("tag %q is longer than %d bytes", tag, MaxTagLen)
	case !utf8.ValidString(tag):
		return fmt.Errorf("tag %q is not UTF-8 text", tag)
	case strings.Contains(tag, ","):
		return fmt.Errorf("tag %q has a comma (a comma separates tags)", tag)
	case strings.TrimSpace(tag) != tag:
		return fmt.Errorf("tag %q starts or ends with space", tag)
	case strings.IndexFunc(tag, unicode.IsControl) >= 0:
		return fmt.Errorf("tag %q has a control character", tag)
	}
	return nil
}

// Normalize validates the labels and puts the tags in their recorded form:
// sorted, each once.
func (l *Labels) Normalize() error {
	for _, t := range l.Tags {
		if err := CheckTag(t); err != nil {
			return err
		}
	}
	slices.Sort(l.Tags)
	l.Tags = slices.Compact(l.Tags)
	if len(l.Tags) > MaxTags {
		return fmt.Errorf("%d tags: at most %d", len(l.Tags), MaxTags)
	}
	if l.Host != "" {
		if err := CheckToken("host", l.Host); err != nil {
			return err
		}
	}
	return nil
}
