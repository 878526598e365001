// Package version names the build of the bulkbackup binaries.
package version

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
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

// semverRE matches a semantic version (https://semver.org), without the
// "v" Go and git tags put in front.
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// describeRE matches what `git describe --tags` says past a tag:
// TAG-N-gHASH, with -dirty for a modified tree.
var describeRE = regexp.MustCompile(`^(.+)-(\d+)-(g[0-9a-f]+)(-dirty)?$`)

// Semver returns Version as a semantic version, which the NATS micro
// service announces (it accepts nothing else): a tag's version as it is
// (without its "v"); commits past a tag as build metadata of the tag's
// (v0.4.1-12-gabc1234-dirty: 0.4.1+12.gabc1234.dirty); and a build without
// a tag (a bare revision, "devel") as build metadata of 0.0.0
// (0.0.0+abc1234-dirty).
func Semver() string { return semver(Version) }

func semver(v string) string {
	v = strings.TrimPrefix(v, "v")
	if m := describeRE.FindStringSubmatch(v); m != nil {
		if base := m[1]; semverRE.MatchString(base) && !strings.Contains(base, "+") {
			meta := m[2] + "." + m[3]
			if m[4] != "" {
				meta += ".dirty"
			}
			return base + "+" + meta
		}
	}
	if semverRE.MatchString(v) {
		return v
	}
	meta := strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, v)
	meta = strings.Trim(strings.ReplaceAll(meta, "..", "."), ".")
	if meta == "" {
		meta = "devel"
	}
	return "0.0.0+" + meta
}
