package s3store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storetest"
)

// newStore returns a store in a new bucket of srv under a random prefix.
func newStore(t testing.TB, srv *testenv.MinIOServer) *s3store.Store {
	t.Helper()
	s, err := s3store.New(t.Context(), srv.S3Config(t, "", "repo-"+rand.Text()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	srv := testenv.MinIO(t)
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, srv) })
}

func TestStoreWithoutPrefix(t *testing.T) {
	srv := testenv.MinIO(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := s3store.New(t.Context(), srv.S3Config(t, "", ""))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func BenchmarkStore(b *testing.B) {
	srv := testenv.MinIO(b)
	storetest.Bench(b, func(b *testing.B) store.Store { return newStore(b, srv) })
}

func TestNewError(t *testing.T) {
	srv := testenv.MinIO(t)
	tests := []struct {
		name     string
		edit     func(cfg *s3store.Config)
		wantErr  error
		wantText string
	}{
		{
			name:     "wrong secret key",
			edit:     func(cfg *s3store.Config) { cfg.SecretKey = "wrong-secret-key" },
			wantErr:  store.ErrAccessDenied,
			wantText: "credentials refused for endpoint " + srv.Endpoint,
		},
		{
			name:     "unknown access key",
			edit:     func(cfg *s3store.Config) { cfg.AccessKey = "nobody" },
			wantErr:  store.ErrAccessDenied,
			wantText: "credentials refused for endpoint " + srv.Endpoint,
		},
		{
			name:     "missing bucket",
			edit:     func(cfg *s3store.Config) { cfg.Bucket = "no-such-bucket" },
			wantErr:  s3store.ErrNoBucket,
			wantText: "no-such-bucket",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := srv.S3Config(t, "", "")
			tt.edit(&cfg)
			_, err := s3store.New(t.Context(), cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("New error %q does not contain %q", err, tt.wantText)
			}
		})
	}
}

func TestNewInvalidConfig(t *testing.T) {
	tests := []struct {
		name     string
		cfg      s3store.Config
		wantText string
	}{
		{"no endpoint", s3store.Config{Bucket: "b"}, "Endpoint is empty"},
		{"scheme in endpoint", s3store.Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b"}, "without a scheme"},
		{"no bucket", s3store.Config{Endpoint: "127.0.0.1:9000"}, "Bucket is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s3store.New(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("New error = %v, want one containing %q", err, tt.wantText)
			}
		})
	}
}

func TestCreateBucket(t *testing.T) {
	srv := testenv.MinIO(t)
	cfg := srv.S3Config(t, "created-by-new", "repo")
	cfg.CreateBucket = true
	s, err := s3store.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New with CreateBucket: %v", err)
	}
	if err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put into the created bucket: %v", err)
	}
	if got, want := s.Location(), "s3://created-by-new/repo"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	// The bucket now exists, so New succeeds without CreateBucket too.
	cfg.CreateBucket = false
	s, err = s3store.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New on the created bucket: %v", err)
	}
	if got, err := s.Get(t.Context(), "k"); err != nil || string(got) != "v" {
		t.Errorf("Get = %q, %v; want %q", got, err, "v")
	}
}

func TestPrefixIsolation(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := srv.NewBucket(t)
	stores := make(map[string]*s3store.Store)
	for _, prefix := range []string{"/a/", "ab"} {
		s, err := s3store.New(t.Context(), srv.S3Config(t, bucket, prefix))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), "k", []byte(prefix)); err != nil {
			t.Fatal(err)
		}
		stores[prefix] = s
	}
	for prefix, s := range stores {
		var keys []string
		for info, err := range s.List(t.Context(), "") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, info.Key)
		}
		if len(keys) != 1 || keys[0] != "k" {
			t.Errorf("prefix %q: List = %v, want [k]", prefix, keys)
		}
		if got, err := s.Get(t.Context(), "k"); err != nil || string(got) != prefix {
			t.Errorf("prefix %q: Get = %q, %v; want %q", prefix, got, err, prefix)
		}
	}
}

// TestServerDown checks the errors of a store whose server is down: they
// wrap store.ErrUnavailable, and a cancelled request's error does not.
func TestServerDown(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newStore(t, srv)
	srv.Stop()

	err := s.Put(t.Context(), "k", []byte("v"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put with the server down: error = %v, want %v", err, store.ErrUnavailable)
	}
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Put with the server down: error = %v, want one saying connection refused", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("cancelled Get with the server down: error = %v, want %v and not %v", err, context.Canceled, store.ErrUnavailable)
	}

	srv.Start(t)
	if err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Errorf("Put after restart: %v", err)
	}
}
