package retry_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storetest"
)

func TestDirStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := dirstore.New(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		return retry.New(s, retry.Config{})
	})
}

// newS3Store returns an s3store in a new bucket of srv.
func newS3Store(t *testing.T, srv *testenv.MinIOServer) *s3store.Store {
	t.Helper()
	s, err := s3store.New(t.Context(), srv.S3Config(t, "", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Store(t *testing.T) {
	t.Parallel()
	srv := testenv.MinIO(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return retry.New(newS3Store(t, srv), retry.Config{})
	})
}

// TestS3Outage stops MinIO while a Put is under way, starts it again once
// the Put has failed and is being retried, and checks that the Put then
// succeeds.
func TestS3Outage(t *testing.T) {
	t.Parallel()
	srv := testenv.MinIO(t)
	s := retry.New(newS3Store(t, srv), retry.Config{MaxElapsed: 2 * time.Minute})
	srv.Stop()

	type failure struct {
		attempt int
		err     error
	}
	failures := make(chan failure, 1)
	ctx := retry.WithNotify(t.Context(), func(attempt int, waited time.Duration, err error) error {
		select {
		case failures <- failure{attempt, err}:
		default: // the test has seen one already
		}
		return nil
	})
	data := bytes.Repeat([]byte("survives an outage "), 1<<16)
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, "chunks/outage", data) }()

	select {
	case f := <-failures:
		if f.attempt != 1 || !errors.Is(f.err, store.ErrUnavailable) {
			t.Errorf("notified of try %d failing with %v, want try 1 failing with %v", f.attempt, f.err, store.ErrUnavailable)
		}
	case err := <-done:
		t.Fatalf("Put returned %v while MinIO was down, want it to retry", err)
	case <-time.After(time.Minute):
		t.Fatal("no retry within a minute of stopping MinIO")
	}
	srv.Start(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put after MinIO came back: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Put did not return within a minute of MinIO coming back")
	}
	got, err := s.Get(t.Context(), "chunks/outage")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("Get returned %d bytes, not the %d Put stored", len(got), len(data))
	}
}

// TestS3GoneForGood stops MinIO for good and checks that a Put fails once
// MaxElapsed has passed, naming the store, with an error that wraps
// ErrUnavailable and the last try's error.
func TestS3GoneForGood(t *testing.T) {
	t.Parallel()
	srv := testenv.MinIO(t)
	s3 := newS3Store(t, srv)
	const maxElapsed = 5 * time.Second
	s := retry.New(s3, retry.Config{MaxElapsed: maxElapsed})
	srv.Stop()

	// The limit keeps a Put that retries for ever from hanging the test.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	err := s.Put(ctx, "chunks/lost", []byte("never stored"))
	elapsed := time.Since(start)
	if !errors.Is(err, retry.ErrUnavailable) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Put error = %v, want one wrapping %v and %v", err, retry.ErrUnavailable, store.ErrUnavailable)
	}
	for _, want := range []string{"repository " + s3.Location() + " unavailable for ", "put chunks/lost: ", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Put error %q does not contain %q", err, want)
		}
	}
	var unavailable *retry.UnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("Put error %v is not an *UnavailableError", err)
	}
	if unavailable.Elapsed < maxElapsed || elapsed < maxElapsed {
		t.Errorf("Put gave up after %s (it says %s), before MaxElapsed %s", elapsed, unavailable.Elapsed, maxElapsed)
	}
	t.Logf("gave up after %s: %v", elapsed.Round(time.Millisecond), err)
}
