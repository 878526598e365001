package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
	// binVersion is the version the binaries were stamped with: git
	// describe's, or "" where git is missing (then they report their own).
	binVersion string
)

// Binaries builds the module's commands (go build ./cmd/...: coordinator,
// reader, compressor and bulkctl) once per test process and returns the
// directory holding them. They are stamped with the version
// `git describe --tags --always --dirty` gives, as the Makefile does (see
// BinariesVersion), and built with -race when the test binary is, so that
// the services run under the race detector too. A test package that calls
// Binaries calls RemoveBinaries from its TestMain once m.Run returns.
func Binaries(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		if binDir, err = os.MkdirTemp("", "bulkbackup-bin-"); err != nil {
			binErr = err
			return
		}
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		if binVersion = gitDescribe(root); binVersion != "" {
			// Stamped as the Makefile does, so --version is tested as built.
			args = append(args, "-ldflags", "-X github.com/bulkbackup/bulkbackup/pkg/version.Version="+binVersion)
		}
		if RaceEnabled {
			// Reuses the race-built packages of this test binary.
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool(), append(args, "./cmd/...")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// BinariesVersion builds the binaries (Binaries) and returns the version
// they were stamped with, or "" where git could not say (then they report
// their own).
func BinariesVersion(t testing.TB) string {
	t.Helper()
	Binaries(t)
	return binVersion
}

// RemoveBinaries removes what Binaries built, if anything; TestMain calls it
// after m.Run.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// ModuleRoot returns the module's root directory: the first directory
// holding go.mod from the test's working directory (its package's) up.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// gitDescribe returns `git describe --tags --always --dirty` in dir, the
// version the Makefile stamps, or "" when git cannot say.
func gitDescribe(dir string) string {
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// goTool returns the go command of the toolchain running the tests.
func goTool() string {
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
