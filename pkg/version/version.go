// Package version names the build of the bulkbackup binaries.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is this build's version. The Makefile stamps it at link time:
//
//	go build -ldflags "-X github.com/bulkbackup/bulkbackup/pkg/version.Version=$(git describe --tags --always --dirty)"
//
// Unstamped, it is the module version of a `go install module@version`
// build, else the VCS revision the go command recorded (12 hex digits,
// "-dirty" when the tree was modified), else "devel".
var Version string

func init() {
	if Version == "" {
		Version = fromBuildInfo(debug.ReadBuildInfo())
	}
}

func fromBuildInfo(info *debug.BuildInfo, ok bool) string {
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	return rev[:min(len(rev), 12)] + dirty
}

// String returns the line a binary prints for --version:
// "bulkctl 0.4.1-12-gabc1234 (go1.26.8, linux/amd64)".
func String(prog string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", prog, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
