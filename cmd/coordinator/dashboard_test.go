package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
)

// TestDashboardFlags runs the coordinator with the dashboard on, as a
// deployment would, and checks what the flags and environment decide.
func TestDashboardFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantErr   string // part of the start error; "" to serve
		wantHome  int    // GET / without a login
		wantLogin int    // GET /login
	}{
		{
			name: "token from the environment", env: map[string]string{"BULK_DASHBOARD_TOKEN": "a-token-long-enough-1234"},
			wantHome: http.StatusSeeOther, wantLogin: http.StatusOK,
		},
		{
			name: "public read", args: []string{"--dashboard-public-read"}, env: map[string]string{"BULK_DASHBOARD_TOKEN": "a-token-long-enough-1234"},
			wantHome: http.StatusOK, wantLogin: http.StatusOK,
		},
		{name: "public read without logins", env: map[string]string{"BULK_DASHBOARD_PUBLIC_READ": "true"}, wantHome: http.StatusOK, wantLogin: http.StatusOK},
		{name: "no login at all", wantErr: "BULK_DASHBOARD_TOKEN"},
		{name: "a missing credentials file", args: []string{"--dashboard-credentials", "/nonexistent/creds.yaml"}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"BULK_DASHBOARD_TOKEN", "BULK_DASHBOARD_USER", "BULK_DASHBOARD_PASSWORD", "BULK_DASHBOARD_PUBLIC_READ"} {
				t.Setenv(k, tt.env[k])
			}
			addr := testenv.FreeAddr(t)
			args := append([]string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--dashboard-addr", addr, "--log-level", "error"}, tt.args...)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- run(ctx, args) }()
			defer func() {
				cancel()
				select {
				case err := <-done:
					// Stopped while still setting up its streams, the
					// coordinator says so; that is not the dashboard's.
					if tt.wantErr == "" && err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("coordinator: %v", err)
					}
				case <-time.After(time.Minute):
					t.Error("the coordinator did not stop")
				}
			}()
			if tt.wantErr != "" {
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("start: %v, want an error saying %q", err, tt.wantErr)
					}
					done <- nil
				case <-time.After(time.Minute):
					t.Fatal("the coordinator started")
				}
				return
			}
			client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			get := func(path string) (int, error) {
				resp, err := client.Get("http://" + addr + path)
				if err != nil {
					return 0, err
				}
				resp.Body.Close()
				return resp.StatusCode, nil
			}
			deadline := time.Now().Add(time.Minute)
			status, err := get("/login")
			for ; err != nil; status, err = get("/login") {
				var opErr *net.OpError
				if !errors.As(err, &opErr) || time.Now().After(deadline) {
					t.Fatalf("GET /login: %v", err)
				}
				select {
				case err := <-done:
					t.Fatalf("the coordinator stopped: %v", err)
				case <-time.After(20 * time.Millisecond):
				}
			}
			if status != tt.wantLogin {
				t.Errorf("GET /login: %d, want %d", status, tt.wantLogin)
			}
			if status, err := get("/"); err != nil || status != tt.wantHome {
				t.Errorf("GET /: %d (%v), want %d", status, err, tt.wantHome)
			}
		})
	}
}
