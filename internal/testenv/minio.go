package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
)

// MinIORegion is the region of the servers MinIO starts, MinIO's default;
// naming it spares clients a bucket location lookup.
const MinIORegion = "us-east-1"

const (
	// minioStartTimeout bounds the wait for a started server to be live.
	minioStartTimeout = 30 * time.Second
	// minioLogTail is how much of the server's log a failing test shows.
	minioLogTail = 16 << 10
)

// errNoMinIO means no MinIO server binary was found.
var errNoMinIO = errors.New("minio server binary not found")

// MinIOServer is a MinIO server process on 127.0.0.1, private to one test:
// random ports and root credentials, data in the test's temporary directory.
type MinIOServer struct {
	// Endpoint is the S3 API address, host:port.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string

	bin         string
	dataDir     string
	logPath     string
	consoleAddr string
	client      *minio.Client

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed once cmd has exited
}

// MinIO starts a MinIO server for the test and kills it when the test ends;
// the server's output goes to a file that is logged if the test fails. The
// binary is MinIOBin's. Stop and Start crash the server and bring it back.
func MinIO(t testing.TB) *MinIOServer {
	t.Helper()
	bin := MinIOBin(t)
	dir := t.TempDir()
	m := &MinIOServer{
		Endpoint:    FreeAddr(t),
		AccessKey:   rand.Text(),
		SecretKey:   rand.Text(),
		bin:         bin,
		dataDir:     filepath.Join(dir, "data"),
		logPath:     filepath.Join(dir, "minio.log"),
		consoleAddr: FreeAddr(t),
	}
	client, err := minio.New(m.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Region: MinIORegion,
	})
	if err != nil {
		t.Fatalf("minio client for %s: %v", m.Endpoint, err)
	}
	m.client = client
	// Cleanups run last-in first-out: kill the server, then show its log.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("minio server %s log (%s):\n%s", m.Endpoint, m.logPath, m.logTail())
		}
	})
	t.Cleanup(m.Stop)
	m.Start(t)
	return m
}

// Start starts the server on its port, data directory and credentials and
// waits until it is live. MinIO starts it already; call Start again to bring
// the server back after Stop.
func (m *MinIOServer) Start(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		t.Fatalf("start minio %s: already running", m.Endpoint)
	}
	logFile, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(m.bin, "server", m.dataDir, "--address", m.Endpoint, "--console-address", m.consoleAddr)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start minio %s: %v", m.Endpoint, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited

	if err := waitLive(t.Context(), m.Endpoint, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		m.cmd = nil
		t.Fatalf("start minio %s: %v\nlog (%s):\n%s", m.Endpoint, err, m.logPath, m.logTail())
	}
}

// Stop kills the server with SIGKILL, as a crash would, and waits for it to
// exit. The data directory stays, so Start brings the objects back. Stopping
// a stopped server does nothing.
func (m *MinIOServer) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// NewBucket creates a bucket with a unique name and returns the name.
func (m *MinIOServer) NewBucket(t testing.TB) string {
	t.Helper()
	name := "test-" + strings.ToLower(rand.Text())
	if err := m.client.MakeBucket(t.Context(), name, minio.MakeBucketOptions{Region: MinIORegion}); err != nil {
		t.Fatalf("create bucket %s at %s: %v", name, m.Endpoint, err)
	}
	return name
}

// S3Config returns the s3store configuration for bucket and prefix on this
// server with its root credentials. An empty bucket means a new one from
// NewBucket.
func (m *MinIOServer) S3Config(t testing.TB, bucket, prefix string) s3store.Config {
	t.Helper()
	if bucket == "" {
		bucket = m.NewBucket(t)
	}
	return s3store.Config{
		Endpoint:  m.Endpoint,
		AccessKey: m.AccessKey,
		SecretKey: m.SecretKey,
		Region:    MinIORegion,
		Bucket:    bucket,
		Prefix:    prefix,
	}
}

// logTail returns the end of the server's log.
func (m *MinIOServer) logTail() string {
	data, err := os.ReadFile(m.logPath)
	if err != nil {
		return err.Error()
	}
	if len(data) > minioLogTail {
		data = append([]byte("[...]\n"), data[len(data)-minioLogTail:]...)
	}
	return string(data)
}

// MinIOBin returns the MinIO server binary: $BULK_MINIO_BIN, else minio on
// $PATH, else $GOPATH/bin/minio (GOPATH defaulting to ~/go), where
// scripts/install-minio.sh puts it. Without one the test is skipped, or
// fails when CI=true (see SkipOrFail); a $BULK_MINIO_BIN that cannot run
// fails it.
func MinIOBin(t testing.TB) string {
	t.Helper()
	bin, err := minioBinary()
	if errors.Is(err, errNoMinIO) {
		SkipOrFail(t, "%v; build it with scripts/install-minio.sh", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// minioBinary finds the MinIO server binary as MinIOBin says. It returns an
// error wrapping errNoMinIO when there is none, and a different one when
// $BULK_MINIO_BIN names something that cannot run.
func minioBinary() (string, error) {
	return findBinary("minio", "BULK_MINIO_BIN", errNoMinIO)
}

// waitLive polls the server's liveness endpoint until it answers 200, the
// process exits or minioStartTimeout passes.
func waitLive(ctx context.Context, endpoint string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, minioStartTimeout)
	defer cancel()
	url := "http://" + endpoint + "/minio/health/live"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if live(ctx, url) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("server exited before it was live")
		case <-ctx.Done():
			return fmt.Errorf("not live after %v: %w", minioStartTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// live reports whether a GET of url answers 200.
func live(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
