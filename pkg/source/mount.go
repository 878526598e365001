package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mount is a mounted filesystem as /proc/self/mountinfo describes it.
type Mount struct {
	// Point is where it is mounted; Root is the directory of the
	// filesystem mounted there ("/" unless it is a bind mount).
	Point, Root string
	// Source is what was mounted: a device path for disk filesystems.
	Source string
	FSType string
}

// ParseMountInfo parses the lines of a mountinfo file (proc(5)).
func ParseMountInfo(text string) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			return nil, fmt.Errorf("mountinfo: malformed line %q", line)
		}
		mounts = append(mounts, Mount{Root: unescape(f[3]), Point: unescape(f[4]), FSType: g[0], Source: unescape(g[1])})
	}
	return mounts, sc.Err()
}

// unescape decodes the octal escapes (\040 for a space) mountinfo uses.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountDevice reports whether dir is the root of a mounted filesystem and,
// if so and that filesystem lives on a block device this process can open
// for reading, the device's path.
func MountDevice(dir string) (root bool, device string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, "", fmt.Errorf("mount table: %w", err)
	}
	mounts, err := ParseMountInfo(string(data))
	if err != nil {
		return false, "", err
	}
	var m *Mount
	for i := range mounts { // the last mount on a point hides the earlier ones
		if mounts[i].Point == abs {
			m = &mounts[i]
		}
	}
	if m == nil {
		return false, "", nil
	}
	if m.Root != "/" || !strings.HasPrefix(m.Source, "/") {
		return true, "", nil // a bind mount of a subdirectory, or no device
	}
	fi, err := os.Stat(m.Source)
	if err != nil || fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return true, "", nil
	}
	f, err := os.Open(m.Source)
	if err != nil {
		return true, "", nil
	}
	f.Close()
	return true, m.Source, nil
}

// errEnough stops CountFiles' walk.
var errEnough = errors.New("enough")

// CountFiles counts the entries under dir, stopping once it has seen more
// than limit of them (then it returns limit+1). Unreadable directories are
// count as one entry.
func CountFiles(ctx context.Context, dir string, limit int64) (int64, error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, fmt.Errorf("count files: %w", err)
	}
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p == dir {
			return nil // the directory itself is not one of its files
		}
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		n++
		if n > limit {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return limit + 1, nil
	}
	return n, err
}
