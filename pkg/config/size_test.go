package config_test

import (
	"flag"
	"math"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string // substring; empty means success
	}{
		{name: "bytes", in: "4096", want: 4096},
		{name: "zero", in: "0", want: 0},
		{name: "B suffix", in: "512B", want: 512},
		{name: "KiB", in: "512KiB", want: 512 << 10},
		{name: "MiB", in: "4MiB", want: 4 << 20},
		{name: "MiB 24", in: "24MiB", want: 24 << 20},
		{name: "GiB", in: "1GiB", want: 1 << 30},
		{name: "TiB", in: "2TiB", want: 2 << 40},
		{name: "short K is binary", in: "8K", want: 8 << 10},
		{name: "short M is binary", in: "4M", want: 4 << 20},
		{name: "short G is binary", in: "1G", want: 1 << 30},
		{name: "short T is binary", in: "1T", want: 1 << 40},
		{name: "KB is decimal", in: "3KB", want: 3000},
		{name: "MB is decimal", in: "4MB", want: 4_000_000},
		{name: "GB is decimal", in: "1GB", want: 1_000_000_000},
		{name: "TB is decimal", in: "1TB", want: 1_000_000_000_000},
		{name: "case insensitive", in: "4mib", want: 4 << 20},
		{name: "spaces", in: " 4 MiB ", want: 4 << 20},
		{name: "fraction whole bytes", in: "1.5MiB", want: 3 << 19},
		{name: "fraction KiB", in: "1.5KiB", want: 1536},
		{name: "leading dot", in: ".5K", want: 512},
		{name: "max int64", in: "9223372036854775807", want: math.MaxInt64},
		{name: "empty", in: "", wantErr: `invalid size "": empty`},
		{name: "blank", in: "  ", wantErr: "empty"},
		{name: "negative", in: "-1", wantErr: `invalid size "-1": negative`},
		{name: "negative with unit", in: "-4MiB", wantErr: "negative"},
		{name: "unknown unit", in: "12XB", wantErr: `invalid size "12XB": unknown unit "XB"`},
		{name: "unit only", in: "MiB", wantErr: "no number"},
		{name: "dot only", in: ".", wantErr: "no number"},
		{name: "fraction of a byte", in: "0.1KiB", wantErr: "not a whole number of bytes"},
		{name: "fractional bytes", in: "1.5", wantErr: "not a whole number of bytes"},
		{name: "exponent", in: "1e3", wantErr: "unknown unit"},
		{name: "two dots", in: "1.2.3", wantErr: "unknown unit"},
		{name: "plus sign", in: "+5", wantErr: "no number"},
		{name: "overflow bytes", in: "9223372036854775808", wantErr: "out of range"},
		{name: "overflow unit", in: "8388608TiB", wantErr: "out of range"},
		{name: "huge", in: "99999999999999999999999999TiB", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.ParseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   config.Size
		want string
	}{
		{name: "zero", in: 0, want: "0"},
		{name: "bytes", in: 1000, want: "1000B"},
		{name: "KiB", in: 512 << 10, want: "512KiB"},
		{name: "MiB", in: 4 << 20, want: "4MiB"},
		{name: "fraction of MiB prints KiB", in: 3 << 19, want: "1536KiB"},
		{name: "GiB", in: 1 << 30, want: "1GiB"},
		{name: "TiB", in: 3 << 40, want: "3TiB"},
		{name: "large TiB", in: 1 << 50, want: "1024TiB"},
		{name: "negative", in: -(4 << 20), want: "-4MiB"},
		{name: "min int64", in: math.MinInt64, want: "-8388608TiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
			}
			if tt.in < 0 {
				return
			}
			back, err := config.ParseSize(tt.want)
			if err != nil || back != int64(tt.in) {
				t.Fatalf("ParseSize(%q) = %d, %v; want round trip to %d", tt.want, back, err, int64(tt.in))
			}
		})
	}
}

func TestSizeFlag(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	s := config.Size(4 << 20)
	fs.Var(&s, "chunk-size", "chunk size")
	if got := fs.Lookup("chunk-size").DefValue; got != "4MiB" {
		t.Fatalf("DefValue = %q, want 4MiB", got)
	}
	if err := fs.Parse([]string{"-chunk-size", "24MiB"}); err != nil {
		t.Fatal(err)
	}
	if s != 24<<20 {
		t.Fatalf("size = %d, want %d", s, 24<<20)
	}
	if err := fs.Set("chunk-size", "12XB"); err == nil {
		t.Fatal("Set(12XB) succeeded")
	}
	if s != 24<<20 {
		t.Fatalf("size changed by failed Set: %d", s)
	}
	if got := s.Get(); got != int64(24<<20) {
		t.Fatalf("Get() = %v", got)
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   int64
		want string
	}{
		{name: "zero", in: 0, want: "0 B"},
		{name: "bytes", in: 512, want: "512 B"},
		{name: "just below KiB", in: 1023, want: "1023 B"},
		{name: "KiB", in: 1024, want: "1 KiB"},
		{name: "fraction", in: 1536, want: "1.5 KiB"},
		{name: "MiB", in: 4 << 20, want: "4 MiB"},
		{name: "GiB fraction", in: 3 << 29, want: "1.5 GiB"},
		{name: "rounds up a unit", in: 1<<20 - 1, want: "1 MiB"},
		{name: "TiB", in: 5 << 40, want: "5 TiB"},
		{name: "max", in: math.MaxInt64, want: "8 EiB"},
		{name: "negative", in: -1536, want: "-1.5 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := config.FormatBytes(tt.in); got != tt.want {
				t.Fatalf("FormatBytes(%d) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
