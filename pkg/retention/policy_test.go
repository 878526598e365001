package retention_test

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    retention.Duration
		wantErr error
	}{
		{name: "all units", in: "1y5m7d2h", want: retention.Duration{Years: 1, Months: 5, Days: 7, Hours: 2}},
		{name: "any order", in: "2h1y", want: retention.Duration{Years: 1, Hours: 2}},
		{name: "hours only", in: "36h", want: retention.Duration{Hours: 36}},
		{name: "spaces around", in: " 3d ", want: retention.Duration{Days: 3}},
		{name: "empty is zero", in: "", want: retention.Duration{}},
		{name: "unit twice keeps the last", in: "1d2d", want: retention.Duration{Days: 2}},
		{name: "minus sign parses", in: "-1d", want: retention.Duration{Days: -1}},
		{name: "zero units", in: "0y0h", want: retention.Duration{}},
		{name: "no unit", in: "5", wantErr: retention.ErrInvalid},
		{name: "no number", in: "d", wantErr: retention.ErrInvalid},
		{name: "weeks are not a unit", in: "1w", wantErr: retention.ErrInvalid},
		{name: "no fractions", in: "1.5d", wantErr: retention.ErrInvalid},
		{name: "no spaces inside", in: "1y 2m", wantErr: retention.ErrInvalid},
		{name: "too large", in: "99999999999999999999d", wantErr: retention.ErrInvalid},
		{name: "Go duration", in: "1h30m0s", wantErr: retention.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := retention.ParseDuration(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseDuration(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseDuration(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   retention.Duration
		want string
	}{
		{name: "all units in order", in: retention.Duration{Hours: 4, Days: 3, Months: 2, Years: 1}, want: "1y2m3d4h"},
		{name: "zero units left out", in: retention.Duration{Years: 1, Days: 2}, want: "1y2d"},
		{name: "zero", in: retention.Duration{}, want: "0h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.in.String()
			if got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			back, err := retention.ParseDuration(got)
			if err != nil || back != tt.in {
				t.Errorf("ParseDuration(%q) = %+v, %v; want %+v back", got, back, err, tt.in)
			}
		})
	}
}

// A Policy's periods are flag values, so forget's flags fill it directly.
func TestDurationFlag(t *testing.T) {
	t.Parallel()
	var p retention.Policy
	fs := flag.NewFlagSet("forget", flag.ContinueOnError)
	fs.Var(&p.Within, "keep-within", "")
	fs.Var(&p.WithinDaily, "keep-within-daily", "")
	if err := fs.Parse([]string{"--keep-within", "1y2m", "--keep-within-daily=7d"}); err != nil {
		t.Fatal(err)
	}
	want := retention.Policy{Within: retention.Duration{Years: 1, Months: 2}, WithinDaily: retention.Duration{Days: 7}}
	if p.Within != want.Within || p.WithinDaily != want.WithinDaily {
		t.Errorf("parsed %+v, want %+v", p, want)
	}
	fs.SetOutput(io.Discard)
	// flag formats the error with %v, so only its text is left to check.
	if err := fs.Parse([]string{"--keep-within", "1w"}); err == nil || !strings.Contains(err.Error(), "unknown unit") {
		t.Errorf("--keep-within 1w: error = %v, want the unit refused", err)
	}
}

func TestParseCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr error
	}{
		{name: "number", in: "7", want: 7},
		{name: "zero is off", in: "0", want: 0},
		{name: "unlimited", in: "unlimited", want: retention.Unlimited},
		{name: "minus one is unlimited", in: "-1", want: retention.Unlimited},
		{name: "spaces", in: " 3 ", want: 3},
		{name: "below unlimited", in: "-2", wantErr: retention.ErrInvalid},
		{name: "word", in: "all", wantErr: retention.ErrInvalid},
		{name: "empty", in: "", wantErr: retention.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := retention.ParseCount(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseCount(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseCount(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseGroupBy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		want     retention.GroupBy
		wantText string
		wantErr  error
	}{
		{name: "empty is one group", in: "", want: retention.GroupBy{}, wantText: ""},
		{name: "default", in: "host,path", want: retention.DefaultGroupBy, wantText: "host,path"},
		{name: "restic spellings", in: "hosts,paths,tag", want: retention.GroupBy{Host: true, Path: true, Tags: true}, wantText: "host,path,tags"},
		{name: "spaces and empty items", in: " tags , ,host", want: retention.GroupBy{Host: true, Tags: true}, wantText: "host,tags"},
		{name: "unknown field", in: "host,label", wantErr: retention.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := retention.ParseGroupBy(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseGroupBy(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseGroupBy(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if err == nil && got.String() != tt.wantText {
				t.Errorf("String() = %q, want %q", got.String(), tt.wantText)
			}
		})
	}
}

func TestPolicyEmpty(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy retention.Policy
		want   bool
	}{
		{name: "zero", policy: retention.Policy{}, want: true},
		{name: "empty tag list", policy: retention.Policy{KeepTags: []string{}}, want: true},
		{name: "a count", policy: retention.Policy{Yearly: 1}, want: false},
		{name: "unlimited", policy: retention.Policy{Last: retention.Unlimited}, want: false},
		{name: "within", policy: retention.Policy{Within: retention.Duration{Hours: 1}}, want: false},
		{name: "daily within", policy: retention.Policy{WithinDaily: retention.Duration{Days: 1}}, want: false},
		{name: "tags", policy: retention.Policy{KeepTags: []string{"x"}}, want: false},
		{name: "untagged", policy: retention.Policy{KeepTags: []string{""}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.policy.Empty(); got != tt.want {
				t.Errorf("Empty() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPolicyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy retention.Policy
		want   string
	}{
		{name: "empty", policy: retention.Policy{}, want: "empty policy"},
		{name: "counts", policy: retention.Policy{Last: 2, Daily: 7, Monthly: retention.Unlimited}, want: "keep 2 latest, 7 daily, all monthly snapshots"},
		{
			name: "everything",
			policy: retention.Policy{
				Weekly: 4, Within: retention.Duration{Years: 1}, WithinDaily: retention.Duration{Days: 7},
				KeepTags: []string{"prod,db", ""},
			},
			want: "keep 4 weekly snapshots, daily snapshots within 7d, all snapshots within 1y of the newest, " +
				"all snapshots with tags [prod, db], all snapshots with no tags",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.policy.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
