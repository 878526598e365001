package testenv

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestNATSServerBinary(t *testing.T) {
	tests := []struct {
		name    string
		env     func(tmp string) map[string]string // variables to set; all others cleared
		system  bool                               // whether the system binary exists
		want    string                             // relative to tmp
		wantErr error
	}{
		{
			name: "BULK_NATS_BIN first",
			env: func(tmp string) map[string]string {
				return map[string]string{"BULK_NATS_BIN": filepath.Join(tmp, "explicit/nats-server"), "PATH": filepath.Join(tmp, "path")}
			},
			system: true,
			want:   "explicit/nats-server",
		},
		{
			name: "PATH before GOPATH",
			env: func(tmp string) map[string]string {
				return map[string]string{"PATH": filepath.Join(tmp, "path"), "GOPATH": filepath.Join(tmp, "gopath")}
			},
			system: true,
			want:   "path/nats-server",
		},
		{
			name: "GOPATH before the system's",
			env: func(tmp string) map[string]string {
				return map[string]string{"GOPATH": filepath.Join(tmp, "gopath") + string(filepath.ListSeparator) + filepath.Join(tmp, "other")}
			},
			system: true,
			want:   "gopath/bin/nats-server",
		},
		{
			name:   "GOPATH defaults to ~/go",
			env:    func(tmp string) map[string]string { return map[string]string{"HOME": filepath.Join(tmp, "home")} },
			system: true,
			want:   "home/go/bin/nats-server",
		},
		{
			name:   "the system's last",
			env:    func(tmp string) map[string]string { return map[string]string{"GOPATH": filepath.Join(tmp, "empty")} },
			system: true,
			want:   "sbin/nats-server",
		},
		{
			name:    "not found",
			env:     func(tmp string) map[string]string { return map[string]string{"GOPATH": filepath.Join(tmp, "empty")} },
			wantErr: errNoNATS,
		},
		{
			name:    "no GOPATH, no home, no system binary",
			env:     func(string) map[string]string { return nil },
			wantErr: errNoNATS,
		},
		{
			name: "BULK_NATS_BIN not executable",
			env: func(tmp string) map[string]string {
				return map[string]string{"BULK_NATS_BIN": filepath.Join(tmp, "missing/nats-server"), "PATH": filepath.Join(tmp, "path")}
			},
			system:  true,
			wantErr: os.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			for _, bin := range []string{"explicit/nats-server", "path/nats-server", "gopath/bin/nats-server", "other/bin/nats-server", "home/go/bin/nats-server"} {
				writeExecutable(t, filepath.Join(tmp, bin))
			}
			system := filepath.Join(tmp, "sbin/nats-server")
			if tt.system {
				writeExecutable(t, system)
			}
			saved := natsSystemBins
			natsSystemBins = []string{system}
			t.Cleanup(func() { natsSystemBins = saved })
			for _, name := range []string{"BULK_NATS_BIN", "PATH", "GOPATH", "HOME"} {
				t.Setenv(name, "")
			}
			for name, value := range tt.env(tmp) {
				t.Setenv(name, value)
			}
			got, err := natsServerBinary()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("natsServerBinary() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && got != filepath.Join(tmp, tt.want) {
				t.Errorf("natsServerBinary() = %s, want %s", got, filepath.Join(tmp, tt.want))
			}
			if errors.Is(tt.wantErr, os.ErrNotExist) && errors.Is(err, errNoNATS) {
				t.Errorf("a bad BULK_NATS_BIN must not be reported as a missing binary (skip): %v", err)
			}
		})
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr() = %q (%v), want 127.0.0.1:port", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr's %s: %v", addr, err)
	}
	l.Close()
}
