package source_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/exclude"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// scanWith runs ScanTreeWith to the end and returns the paths it listed,
// its warnings and how many entries it left out.
func scanWith(t *testing.T, root string, opts source.ScanOptions) ([]string, []string, int) {
	t.Helper()
	var paths, warnings []string
	res, err := source.ScanTreeWith(t.Context(), root, opts, func(e manifest.Entry) error {
		paths = append(paths, e.Path)
		return nil
	}, func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatalf("ScanTreeWith(%s): %v", root, err)
	}
	return paths, warnings, res.Excluded
}

func matcher(t *testing.T, lines ...string) *exclude.Matcher {
	t.Helper()
	m, err := exclude.New(lines)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestScanExclude(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "root")
	for _, f := range []string{"a.o", "keep.o", "src/x.c", "src/x.o", "src/build/out", "build/out", "logs/app.log", "logs/keep/app.log", "caf\xe9.tmp"} {
		put(t, root, f, []byte("x"), 0o644)
	}
	mkdirMode(t, root, "src/build/deeper", 0o755)
	got, warnings, excluded := scanWith(t, root, source.ScanOptions{
		Exclude: matcher(t, "*.o", "!keep.o", "/build/", "logs/**", "!logs/keep/", "!logs/keep/**", "caf?.tmp"),
	})
	want := []string{".", "keep.o", "logs", "logs/keep", "logs/keep/app.log", "src", "src/build", "src/build/deeper", "src/build/out", "src/x.c"}
	if !slices.Equal(got, want) || len(warnings) != 0 {
		t.Errorf("listed %q (warnings %q), want %q", got, warnings, want)
	}
	// a.o, build, caf\xe9.tmp, logs/app.log, src/x.o
	if excluded != 5 {
		t.Errorf("excluded = %d, want 5", excluded)
	}
}

func TestScanExcludeCaches(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "root")
	put(t, root, "cache/CACHEDIR.TAG", []byte(source.CacheTagSignature+"\n# made by a test\n"), 0o644)
	put(t, root, "cache/big", []byte("regenerable"), 0o644)
	mkdirMode(t, root, "cache/sub", 0o755)
	put(t, root, "exact/CACHEDIR.TAG", []byte(source.CacheTagSignature), 0o644) // no line end: still a tag
	put(t, root, "exact/x", nil, 0o644)
	put(t, root, "wrong/CACHEDIR.TAG", []byte("Signature: 8a477f597d28d172789f06886806bc5"), 0o644) // short
	put(t, root, "wrong/x", nil, 0o644)
	put(t, root, "case/CACHEDIR.TAG", []byte(strings.ToUpper(source.CacheTagSignature)), 0o644)
	put(t, root, "case/x", nil, 0o644)
	put(t, root, "real.tag", []byte(source.CacheTagSignature), 0o644)
	mkdirMode(t, root, "linked", 0o755)
	symlink(t, "../real.tag", filepath.Join(root, "linked/CACHEDIR.TAG")) // a symlink is no tag
	put(t, root, "linked/x", nil, 0o644)

	got, _, excluded := scanWith(t, root, source.ScanOptions{ExcludeCaches: true})
	want := []string{".", "cache", "cache/CACHEDIR.TAG", "case", "case/CACHEDIR.TAG", "case/x", "exact", "exact/CACHEDIR.TAG",
		"linked", "linked/CACHEDIR.TAG", "linked/x", "real.tag", "wrong", "wrong/CACHEDIR.TAG", "wrong/x"}
	if !slices.Equal(got, want) || excluded != 3 {
		t.Errorf("listed %q, excluded %d; want %q, 3", got, excluded, want)
	}
	if got, _, _ := scanWith(t, root, source.ScanOptions{}); !slices.Contains(got, "cache/big") {
		t.Errorf("without ExcludeCaches the cache's content is left out: %q", got)
	}
}

func TestScanExcludeLargerThan(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "root")
	put(t, root, "small", make([]byte, 100), 0o644)
	put(t, root, "limit", make([]byte, 1000), 0o644)
	put(t, root, "d/big", make([]byte, 1001), 0o644)
	symlink(t, "d/big", filepath.Join(root, "link-to-big"))
	got, _, excluded := scanWith(t, root, source.ScanOptions{ExcludeLargerThan: 1000})
	if want := []string{".", "d", "limit", "link-to-big", "small"}; !slices.Equal(got, want) || excluded != 1 {
		t.Errorf("listed %q, excluded %d; want %q, 1", got, excluded, want)
	}
}

// TestScanSkipsRepository leaves a repository inside the tree out, however
// the tree reaches it.
func TestScanSkipsRepository(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "root")
	put(t, root, "data/x", []byte("x"), 0o644)
	put(t, root, "backups/repo/config", []byte("{}"), 0o600)
	put(t, root, "backups/other", []byte("y"), 0o644)
	got, _, excluded := scanWith(t, root, source.ScanOptions{
		SkipDirs: []string{filepath.Join(root, "backups/./repo"), filepath.Join(root, "missing"), filepath.Join(root, "data/x")},
	})
	if want := []string{".", "backups", "backups/other", "data", "data/x"}; !slices.Equal(got, want) || excluded != 1 {
		t.Errorf("listed %q, excluded %d; want %q, 1", got, excluded, want)
	}
}

// TestScanOneFileSystem mounts a tmpfs inside the tree (root only): it is
// listed as an empty directory, what it holds is not.
func TestScanOneFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	root := filepath.Join(t.TempDir(), "root")
	put(t, root, "here", nil, 0o644)
	mnt := mkdirMode(t, root, "mnt", 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	put(t, root, "mnt/there", nil, 0o644)
	got, _, _ := scanWith(t, root, source.ScanOptions{OneFileSystem: true})
	if want := []string{".", "here", "mnt"}; !slices.Equal(got, want) {
		t.Errorf("one filesystem: listed %q, want %q", got, want)
	}
	got, _, _ = scanWith(t, root, source.ScanOptions{})
	if !slices.Contains(got, "mnt/there") {
		t.Errorf("without OneFileSystem: listed %q, want mnt/there in it", got)
	}
}
