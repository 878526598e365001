// Package testenv holds the helpers that the module's tests share: a MinIO
// server process (MinIO), the lookup of the nats-server and MinIO binaries,
// the build of the commands under cmd/ (Binaries), SkipOrFail, FreeAddr and
// LogBuffer. It sits at the module root so that the tests of cmd/ and
// scripts/ can import it as well as those of pkg/.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SkipOrFail skips the test with the formatted message, or fails it when the
// environment variable CI is true: in CI a missing dependency must not pass
// silently as skipped tests.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf(format+" (skipping is not allowed when CI=true)", args...)
		return
	}
	t.Skipf(format, args...)
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// findBinary finds the executable name: the one $envVar names, else name on
// $PATH, else $GOPATH/bin/name with GOPATH defaulting to ~/go, as go
// install does (the install scripts under scripts/ build there), else the
// first of fallbacks that is executable. It returns an error wrapping
// errNotFound when there is none, and a different one when $envVar names
// something that cannot run.
func findBinary(name, envVar string, errNotFound error, fallbacks ...string) (string, error) {
	if bin := os.Getenv(envVar); bin != "" {
		if _, err := exec.LookPath(bin); err != nil {
			return "", fmt.Errorf("%s: %w", envVar, err)
		}
		return bin, nil
	}
	if bin, err := exec.LookPath(name); err == nil {
		return bin, nil
	}
	var notes []string
	dir, err := goBinDir()
	if err == nil {
		fallbacks = append([]string{filepath.Join(dir, name)}, fallbacks...)
	} else {
		notes = append(notes, err.Error())
	}
	for _, bin := range fallbacks {
		if _, err := exec.LookPath(bin); err == nil {
			return bin, nil
		}
	}
	where := "not on $PATH"
	if len(fallbacks) > 0 {
		where += " nor at " + strings.Join(fallbacks, ", ")
	}
	if len(notes) > 0 {
		where += " (" + strings.Join(notes, "; ") + ")"
	}
	return "", fmt.Errorf("%w: %s", errNotFound, where)
}

// goBinDir returns the bin directory of the first $GOPATH entry, GOPATH
// defaulting to ~/go as for go install.
func goBinDir() (string, error) {
	gopath := filepath.SplitList(os.Getenv("GOPATH"))
	if len(gopath) > 0 && gopath[0] != "" {
		return filepath.Join(gopath[0], "bin"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no GOPATH or home directory: %w", err)
	}
	if home == "" {
		return "", errors.New("no GOPATH or home directory")
	}
	return filepath.Join(home, "go", "bin"), nil
}
