package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{name: "no build info", ok: false, want: "devel"},
		{name: "module version", ok: true, want: "v0.4.1",
			info: &debug.BuildInfo{Main: debug.Module{Version: "v0.4.1"}}},
		{name: "revision", ok: true, want: "0123456789ab",
			info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}}}},
		{name: "modified tree", ok: true, want: "0123456789ab-dirty",
			info: &debug.BuildInfo{Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}},
		{name: "short revision", ok: true, want: "abc",
			info: &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}}},
		{name: "nothing recorded", ok: true, want: "devel", info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(tt.info, tt.ok); got != tt.want {
				t.Errorf("fromBuildInfo = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	if Version == "" {
		t.Fatal("Version is empty after init")
	}
	got := String("bulkctl")
	want := "bulkctl " + Version + " (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got != want || strings.Count(got, "\n") != 0 {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestSemver(t *testing.T) {
	tests := []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3-rc.1", "1.2.3-rc.1"},
		{"v0.4.1-12-gabc1234", "0.4.1+12.gabc1234"},
		{"v0.4.1-12-gabc1234-dirty", "0.4.1+12.gabc1234.dirty"},
		{"v1.0.0-rc.1-3-g0123abc", "1.0.0-rc.1+3.g0123abc"},
		{"b04e2fa", "0.0.0+b04e2fa"},
		{"b04e2fa-dirty", "0.0.0+b04e2fa-dirty"},
		{"0123456789ab-dirty", "0.0.0+0123456789ab-dirty"},
		{"devel", "0.0.0+devel"},
		{"release/2026 candidate", "0.0.0+release-2026-candidate"},
		{"", "0.0.0+devel"},
	}
	for _, tt := range tests {
		got := semver(tt.in)
		if got != tt.want {
			t.Errorf("semver(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !semverRE.MatchString(got) {
			t.Errorf("semver(%q) = %q, not a semantic version", tt.in, got)
		}
	}
}
