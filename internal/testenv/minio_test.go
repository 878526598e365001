package testenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
)

func TestMinIOStopStart(t *testing.T) {
	srv := MinIO(t)
	s, err := s3store.New(t.Context(), srv.S3Config(t, "", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "k", []byte("kept across restarts")); err != nil {
		t.Fatal(err)
	}
	endpoint := srv.Endpoint

	srv.Stop()
	srv.Stop() // stopping twice is harmless
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.Get(ctx, "k"); err == nil {
		t.Fatal("Get succeeded while the server was stopped")
	}

	srv.Start(t)
	if srv.Endpoint != endpoint {
		t.Errorf("Endpoint after restart = %s, want %s", srv.Endpoint, endpoint)
	}
	got, err := s.Get(t.Context(), "k")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if string(got) != "kept across restarts" {
		t.Errorf("Get after restart = %q", got)
	}
}

func TestNewBucketIsUnique(t *testing.T) {
	srv := MinIO(t)
	a, b := srv.NewBucket(t), srv.NewBucket(t)
	if a == b {
		t.Errorf("NewBucket returned %q twice", a)
	}
}

// recorder is a testing.TB that records whether Skipf or Fatalf was called.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skipf(string, ...any)  { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestSkipOrFail(t *testing.T) {
	tests := []struct {
		ci       string
		wantFail bool
	}{
		{"", false},
		{"false", false},
		{"true", true},
		{"1", true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			var r recorder
			SkipOrFail(&r, "no %s", "server")
			if r.failed != tt.wantFail || r.skipped == tt.wantFail {
				t.Errorf("failed = %v, skipped = %v; want failed = %v", r.failed, r.skipped, tt.wantFail)
			}
		})
	}
}

func TestMinIOBinary(t *testing.T) {
	tests := []struct {
		name    string
		env     func(tmp string) map[string]string // variables to set; all others cleared
		want    string                             // relative to tmp
		wantErr error
	}{
		{
			name: "BULK_MINIO_BIN first",
			env: func(tmp string) map[string]string {
				return map[string]string{"BULK_MINIO_BIN": filepath.Join(tmp, "explicit/minio"), "PATH": filepath.Join(tmp, "path")}
			},
			want: "explicit/minio",
		},
		{
			name: "PATH before GOPATH",
			env: func(tmp string) map[string]string {
				return map[string]string{"PATH": filepath.Join(tmp, "path"), "GOPATH": filepath.Join(tmp, "gopath")}
			},
			want: "path/minio",
		},
		{
			name: "first GOPATH entry",
			env: func(tmp string) map[string]string {
				return map[string]string{"GOPATH": filepath.Join(tmp, "gopath") + string(filepath.ListSeparator) + filepath.Join(tmp, "other")}
			},
			want: "gopath/bin/minio",
		},
		{
			name: "GOPATH defaults to ~/go",
			env:  func(tmp string) map[string]string { return map[string]string{"HOME": filepath.Join(tmp, "home")} },
			want: "home/go/bin/minio",
		},
		{
			name:    "not found",
			env:     func(tmp string) map[string]string { return map[string]string{"GOPATH": filepath.Join(tmp, "empty")} },
			wantErr: errNoMinIO,
		},
		{
			name: "BULK_MINIO_BIN not executable",
			env: func(tmp string) map[string]string {
				return map[string]string{"BULK_MINIO_BIN": filepath.Join(tmp, "missing/minio"), "PATH": filepath.Join(tmp, "path")}
			},
			wantErr: os.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			for _, bin := range []string{"explicit/minio", "path/minio", "gopath/bin/minio", "other/bin/minio", "home/go/bin/minio"} {
				writeExecutable(t, filepath.Join(tmp, bin))
			}
			for _, name := range []string{"BULK_MINIO_BIN", "PATH", "GOPATH", "HOME"} {
				t.Setenv(name, "")
			}
			for name, value := range tt.env(tmp) {
				t.Setenv(name, value)
			}
			got, err := minioBinary()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("minioBinary() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && got != filepath.Join(tmp, tt.want) {
				t.Errorf("minioBinary() = %s, want %s", got, filepath.Join(tmp, tt.want))
			}
			if errors.Is(tt.wantErr, os.ErrNotExist) && errors.Is(err, errNoMinIO) {
				t.Errorf("a bad BULK_MINIO_BIN must not be reported as a missing binary (skip): %v", err)
			}
		})
	}
}

func writeExecutable(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}
