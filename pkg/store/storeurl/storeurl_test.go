package storeurl

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
)

// creds are S3 options with credentials and an endpoint nothing listens on.
var creds = S3Options{Endpoint: "http://127.0.0.1:1", AccessKey: "ak", SecretKey: "sk"}

// TestOpen opens repository strings that need no S3 server. It changes the
// working directory (for "rel/dir"), so it does not run in parallel.
func TestOpen(t *testing.T) {
	tmp := t.TempDir()
	t.Chdir(tmp)
	existing := filepath.Join(tmp, "existing")
	if err := os.Mkdir(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(tmp, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		repo    string
		opts    Options
		wantDir string // the store is a dirstore.Store rooted here
		wantErr error  // errAny: any error
		errText string // the error mentions this
	}{
		{name: "empty", repo: "", wantErr: errAny, errText: "no repository given"},
		{name: "absolute dir", repo: existing, wantDir: existing},
		{name: "absolute dir, created", repo: filepath.Join(tmp, "new", "abs"), opts: Options{Create: true}, wantDir: filepath.Join(tmp, "new", "abs")},
		{name: "relative dir", repo: "existing", wantDir: existing},
		{name: "relative dir, created", repo: "rel/dir", opts: Options{Create: true}, wantDir: filepath.Join(tmp, "rel", "dir")},
		{name: "file URL", repo: "file://" + existing, wantDir: existing},
		{name: "file URL, created", repo: "file://" + filepath.Join(tmp, "new", "url"), opts: Options{Create: true}, wantDir: filepath.Join(tmp, "new", "url")},
		{name: "file URL, missing", repo: "file:///x/bulkbackup-no-such-dir", wantErr: fs.ErrNotExist, errText: "/x/bulkbackup-no-such-dir"},
		{name: "missing dir", repo: filepath.Join(tmp, "missing"), wantErr: fs.ErrNotExist, errText: "missing"},
		{name: "missing relative dir", repo: "rel/missing", wantErr: fs.ErrNotExist, errText: "rel/missing"},
		{name: "regular file", repo: regular, wantErr: errAny, errText: "not a directory"},
		{name: "s3 without credentials", repo: "s3://bucket/pre/fix", wantErr: errAny, errText: "AWS_ACCESS_KEY_ID"},
		{name: "s3 without secret", repo: "s3://bucket", opts: Options{S3: S3Options{AccessKey: "ak"}}, wantErr: errAny, errText: "AWS_SECRET_ACCESS_KEY"},
		{name: "s3 without bucket", repo: "s3://", opts: Options{S3: creds}, wantErr: errAny, errText: "no bucket"},
		{name: "s3 without bucket, with prefix", repo: "s3:///prefix", opts: Options{S3: creds}, wantErr: errAny, errText: "no bucket"},
		{name: "s3 with a bad endpoint", repo: "s3://bucket", opts: Options{S3: S3Options{Endpoint: "ftp://h", AccessKey: "ak", SecretKey: "sk"}}, wantErr: errAny, errText: "ftp://h"},
		{name: "s3 server unreachable", repo: "s3://bucket/pre/fix", opts: Options{S3: creds}, wantErr: errAny, errText: "127.0.0.1:1"},
		{name: "unknown scheme", repo: "ftp://x", wantErr: errAny, errText: "unknown scheme"},
		{name: "unknown scheme, created", repo: "gs://bucket", opts: Options{Create: true}, wantErr: errAny, errText: "unknown scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			st, err := Open(ctx, tt.repo, tt.opts)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Open(%q) = %v, want an error", tt.repo, st.Location())
				}
				if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
					t.Errorf("Open(%q) = %v, want %v", tt.repo, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("Open(%q) error %q does not mention %q", tt.repo, err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tt.repo, err)
			}
			if _, ok := st.(*dirstore.Store); !ok {
				t.Fatalf("Open(%q) = %T, want *dirstore.Store", tt.repo, st)
			}
			if got := st.Location(); got != tt.wantDir {
				t.Errorf("Open(%q).Location() = %s, want %s", tt.repo, got, tt.wantDir)
			}
			if fi, err := os.Stat(tt.wantDir); err != nil || !fi.IsDir() {
				t.Errorf("store directory %s: %v", tt.wantDir, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(tmp, "ftp:")); err == nil {
		t.Error("an unknown scheme created a directory")
	}
}

// errAny, as a wantErr, accepts any non-nil error.
var errAny = errors.New("any error")

func TestS3Config(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		repo    string
		opts    S3Options
		want    s3store.Config // compared without credentials
		wantErr string         // a substring of the error; "" for success
	}{
		{
			name: "AWS by default",
			repo: "s3://bucket/pre/fix",
			want: s3store.Config{Endpoint: "s3.amazonaws.com", Secure: true, Bucket: "bucket", Prefix: "pre/fix"},
		},
		{
			name: "https URL",
			repo: "s3://bucket", opts: S3Options{Endpoint: "https://h:9000"},
			want: s3store.Config{Endpoint: "h:9000", Secure: true, Bucket: "bucket"},
		},
		{
			name: "http URL",
			repo: "s3://bucket/p", opts: S3Options{Endpoint: "http://127.0.0.1:9000"},
			want: s3store.Config{Endpoint: "127.0.0.1:9000", Secure: false, Bucket: "bucket", Prefix: "p"},
		},
		{
			name: "http URL with a trailing slash",
			repo: "s3://bucket", opts: S3Options{Endpoint: "http://h:9000/"},
			want: s3store.Config{Endpoint: "h:9000", Secure: false, Bucket: "bucket"},
		},
		{
			name: "host and port mean https",
			repo: "s3://bucket", opts: S3Options{Endpoint: "h:9000"},
			want: s3store.Config{Endpoint: "h:9000", Secure: true, Bucket: "bucket"},
		},
		{
			name: "prefix slashes trimmed",
			repo: "s3://bucket//pre/fix/",
			want: s3store.Config{Endpoint: "s3.amazonaws.com", Secure: true, Bucket: "bucket", Prefix: "pre/fix"},
		},
		{
			name: "region kept",
			repo: "s3://bucket", opts: S3Options{Region: "eu-west-1"},
			want: s3store.Config{Endpoint: "s3.amazonaws.com", Secure: true, Bucket: "bucket", Region: "eu-west-1"},
		},
		{name: "unknown endpoint scheme", repo: "s3://bucket", opts: S3Options{Endpoint: "ftp://h:21"}, wantErr: "ftp://h:21"},
		{name: "endpoint URL without host", repo: "s3://bucket", opts: S3Options{Endpoint: "http://"}, wantErr: "want http://HOST"},
		{name: "no bucket", repo: "s3://", wantErr: "no bucket"},
		{name: "no bucket, with prefix", repo: "s3:///p", wantErr: "no bucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.AccessKey, tt.opts.SecretKey, tt.opts.SessionToken = "ak", "sk", "tok"
			got, err := s3Config(tt.repo, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("s3Config(%q, endpoint %q) error = %v, want one mentioning %q", tt.repo, tt.opts.Endpoint, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("s3Config(%q, endpoint %q): %v", tt.repo, tt.opts.Endpoint, err)
			}
			if got.AccessKey != "ak" || got.SecretKey != "sk" || got.SessionToken != "tok" {
				t.Errorf("credentials not passed on: %q, %q, %q", got.AccessKey, got.SecretKey, got.SessionToken)
			}
			got.AccessKey, got.SecretKey, got.SessionToken = "", "", ""
			if got != tt.want {
				t.Errorf("s3Config(%q, endpoint %q) = %+v, want %+v", tt.repo, tt.opts.Endpoint, got, tt.want)
			}
		})
	}
}

func TestS3FromEnv(t *testing.T) {
	vars := []string{
		"BULK_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
	}
	tests := []struct {
		name string
		env  map[string]string
		want S3Options
	}{
		{name: "nothing set", want: S3Options{}},
		{
			name: "AWS variables",
			env: map[string]string{
				"AWS_ENDPOINT_URL": "http://e", "AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk",
				"AWS_SESSION_TOKEN": "tok", "AWS_DEFAULT_REGION": "r1",
			},
			want: S3Options{Endpoint: "http://e", AccessKey: "ak", SecretKey: "sk", SessionToken: "tok", Region: "r1"},
		},
		{
			name: "BULK_S3_ENDPOINT and AWS_REGION win",
			env: map[string]string{
				"BULK_S3_ENDPOINT": "http://bulk", "AWS_ENDPOINT_URL_S3": "http://s3", "AWS_ENDPOINT_URL": "http://e",
				"AWS_REGION": "r2", "AWS_DEFAULT_REGION": "r1",
			},
			want: S3Options{Endpoint: "http://bulk", Region: "r2"},
		},
		{
			name: "AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL",
			env:  map[string]string{"AWS_ENDPOINT_URL_S3": "http://s3", "AWS_ENDPOINT_URL": "http://e"},
			want: S3Options{Endpoint: "http://s3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range vars {
				t.Setenv(v, "")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if got := S3FromEnv(); got != tt.want {
				t.Errorf("S3FromEnv() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOpenMinIO(t *testing.T) {
	t.Parallel()
	srv := testenv.MinIO(t)
	opts := S3Options{Endpoint: "http://" + srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1"}
	bucket := srv.NewBucket(t)

	st, err := Open(t.Context(), "s3://"+bucket+"/pre/fix", Options{S3: opts})
	if err != nil {
		t.Fatalf("Open existing bucket: %v", err)
	}
	if _, ok := st.(*s3store.Store); !ok {
		t.Fatalf("Open = %T, want *s3store.Store", st)
	}
	if got, want := st.Location(), "s3://"+bucket+"/pre/fix"; got != want {
		t.Errorf("Location() = %s, want %s", got, want)
	}
	if err := st.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	// The prefix is honoured: another prefix of the bucket does not see k.
	other, err := Open(t.Context(), "s3://"+bucket+"/other", Options{S3: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(t.Context(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get under another prefix = %v, want %v", err, store.ErrNotFound)
	}
	if got, err := st.Get(t.Context(), "k"); err != nil || string(got) != "v" {
		t.Errorf("Get = %q, %v; want v", got, err)
	}

	// A missing bucket is an error unless Create is set.
	if _, err := Open(t.Context(), "s3://bulk-missing-bucket", Options{S3: opts}); !errors.Is(err, s3store.ErrNoBucket) {
		t.Errorf("Open missing bucket = %v, want %v", err, s3store.ErrNoBucket)
	}
	if _, err := Open(t.Context(), "s3://bulk-missing-bucket", Options{S3: opts, Create: true}); err != nil {
		t.Errorf("Open missing bucket with Create: %v", err)
	}

	// Wrong credentials are refused.
	bad := opts
	bad.SecretKey = "wrong-" + bad.SecretKey
	if _, err := Open(t.Context(), "s3://"+bucket, Options{S3: bad}); !errors.Is(err, store.ErrAccessDenied) {
		t.Errorf("Open with a wrong secret = %v, want %v", err, store.ErrAccessDenied)
	}
}
