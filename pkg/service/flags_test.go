package service

import (
	"flag"
	"strings"
	"testing"
)

func TestVersionRequested(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{"none", nil, false},
		{"long", []string{"--version"}, true},
		{"single dash", []string{"-version"}, true},
		{"after other flags", []string{"--nats", "nats://x", "--version"}, true},
		{"explicit true", []string{"--version=true"}, true},
		{"after --", []string{"--", "--version"}, false},
		{"other flag", []string{"--versions"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VersionRequested(tt.args); got != tt.want {
				t.Errorf("VersionRequested(%q) = %v, want %v", tt.args, got, tt.want)
			}
		})
	}
}

// TestUsageNamesVersion: -h of every service lists --version, which is no
// flag of the set (so BULK_VERSION and YAML files cannot set it).
func TestUsageNamesVersion(t *testing.T) {
	fs := flag.NewFlagSet("reader", flag.ContinueOnError)
	var f Flags
	f.Register(fs, DefaultNATSURL, "URL")
	var out strings.Builder
	fs.SetOutput(&out)
	if err := fs.Parse([]string{"-h"}); err != flag.ErrHelp {
		t.Fatalf("Parse(-h) = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(out.String(), "-version\n") || fs.Lookup("version") != nil {
		t.Errorf("-h output does not name -version, or version is a flag:\n%s", out.String())
	}
}
