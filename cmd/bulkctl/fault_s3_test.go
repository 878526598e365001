package main

import (
	"bufio"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
)

// The S3 fault tests run the fleet as OS processes on a repository in a
// real MinIO server, and kill the server mid-backup: for a while, after
// which it comes back (scenario 5), or for good.

// faultBucketRepo is the repository of the S3 fault tests; the first
// backup creates the bucket.
const faultBucketRepo = "s3://fault-test/repo"

// newS3FaultEnv starts MinIO and a fault fleet whose repository is a bucket
// on it. Every process the test starts, the fleet's and bulkctl's, takes the
// S3 endpoint and keys from the environment.
func newS3FaultEnv(t *testing.T, coordArgs ...string) (*testenv.MinIOServer, *faultEnv) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries and MinIO")
	}
	m := startMinIOForAll(t)
	return m, newFaultEnv(t, faultBucketRepo, coordArgs...)
}

// startMinIOForAll starts MinIO (testenv.MinIO: skipped without a binary,
// or failed when CI=true) and points every process the test starts at it
// through the environment. The test stops it (SIGKILL, as a crash) and
// starts it again on the same port and data with Stop and Start.
func startMinIOForAll(t *testing.T) *testenv.MinIOServer {
	t.Helper()
	m := testenv.MinIO(t)
	t.Setenv("AWS_ENDPOINT_URL", "http://"+m.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	t.Setenv("AWS_REGION", testenv.MinIORegion)
	return m
}

func TestFaultS3Outage(t *testing.T) {
	const outage = 20 * time.Second
	m, e := newS3FaultEnv(t)
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	m.Stop()
	doneAtStop, _ := w.counts()
	t.Logf("minio stopped for %s", outage)
	time.Sleep(outage) // the outage itself
	doneAtRestart, _ := w.counts()
	m.Start(t)
	t.Logf("minio started again")

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s; %d of %d stored chunks were done at the outage, %d when minio came back",
		ev.State, time.Since(start).Round(time.Millisecond), doneAtStop, e.nonZero, doneAtRestart)
	e.check(t, ev)
	if doneAtStop >= e.nonZero {
		t.Errorf("minio stopped with %d of %d stored chunks done: want the outage mid-job", doneAtStop, e.nonZero)
	}
	// Nothing was stored while the server was down, except what a
	// compressor had written just before and reported just after the kill:
	// at most one chunk per worker (two).
	if n := doneAtRestart - doneAtStop; n > 2 {
		t.Errorf("%d chunks were stored during the outage: was minio down?", n)
	}
	stop(t, comp1, comp2, e.reader, e.coord)

	// The outage hit chunks in flight: the compressors retried them in
	// place, and one at least was held across most of the outage before it
	// was stored.
	var retries int
	var longest time.Duration
	for _, p := range []*proc{comp1, comp2} {
		n, waited := storeRetries(t, p)
		t.Logf("%s retried %d times while the repository was down; its longest wait for one chunk: %s", p.name, n, waited.Round(time.Millisecond))
		retries += n
		longest = max(longest, waited)
	}
	if retries == 0 {
		t.Errorf("no compressor retried a chunk: the outage hit no write in flight")
	}
	if longest < outage*3/4 {
		t.Errorf("the longest a chunk waited for the repository was %s, want most of the %s outage", longest, outage)
	}
}

func TestFaultS3Down(t *testing.T) {
	const storeTimeout = 5 * time.Second
	m, e := newS3FaultEnv(t)
	comp1 := e.startCompressor(t, "comp1", "--store-timeout", storeTimeout.String())
	comp2 := e.startCompressor(t, "comp2", "--store-timeout", storeTimeout.String())

	// A first backup: the snapshot that must come out unharmed.
	firstJob, _ := e.backup(t)
	first := e.wait(t, firstJob)
	e.check(t, first)

	// A second one, of other data, submitted with bulkctl as a user would.
	vol2 := writeVolume(t, filepath.Join(e.dir, "vol2.img"), e.size, 32)
	w := watchDone(t, e.nc, "*") // only the second job runs now
	backup := startProc(t, "bulkctl-backup", "bulkctl", "backup", faultHost+":"+vol2, "-r", e.repo, "--nats", e.url, "--chunk-size", "1MiB")
	w.until(t, nonZeroChunks(t, vol2, faultChunkSize)/4)
	m.Stop()
	stoppedAt := time.Now()
	t.Logf("minio stopped for good")

	select {
	case <-backup.done:
	case <-time.After(faultJobTimeout):
		t.Fatalf("bulkctl backup still running %s after minio stopped", faultJobTimeout)
	}
	after := time.Since(stoppedAt)
	out := backup.log()
	t.Logf("bulkctl backup exited %d, %s after minio stopped:\n%s", backup.cmd.ProcessState.ExitCode(), after.Round(time.Millisecond), out)
	if code := backup.cmd.ProcessState.ExitCode(); code != exitError {
		t.Errorf("bulkctl backup exited %d, want %d", code, exitError)
	}
	for _, want := range []string{"repository " + faultBucketRepo + " unavailable", "store timeout 5s", "connection refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("bulkctl backup's error does not say %q", want)
		}
	}
	if after < storeTimeout {
		t.Errorf("the job failed %s after minio stopped, before the compressors' store timeout of %s", after.Round(time.Millisecond), storeTimeout)
	}

	// No snapshot was committed, and the first one is whole.
	m.Start(t)
	r := bulkctlProcOK(t, "snapshots", "-r", e.repo, "--json")
	var snaps []snapshotEntry
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatalf("snapshots --json output %q: %v", r.stdout, err)
	}
	if len(snaps) != 1 || snaps[0].ID != first.SnapshotID {
		t.Errorf("repository holds snapshots %+v, want only the first job's %s", snaps, first.SnapshotID)
	}
	r = bulkctlProcOK(t, "verify", first.SnapshotID, "-r", e.repo, "--compare", e.vol)
	if !strings.Contains(r.stdout, first.SnapshotID) || !strings.Contains(r.stdout, "OK") {
		t.Errorf("verify output:\n%s", r.stdout)
	}
	stop(t, comp1, comp2, e.reader, e.coord)
}

// TestFaultS3DownInProcess stops MinIO for good under a backup of bulkctl's
// own in-process fleet: the backup fails once --store-timeout has passed,
// with an error naming the repository, and exits 1.
func TestFaultS3DownInProcess(t *testing.T) {
	const storeTimeout = 3 * time.Second
	if testing.Short() {
		t.Skip("runs bulkctl and MinIO")
	}
	m := startMinIOForAll(t)
	vol := writeVolume(t, filepath.Join(t.TempDir(), "vol.img"), 512<<20, 41)
	backup := startProc(t, "bulkctl-backup", "bulkctl", "backup", vol, "-r", faultBucketRepo,
		"--chunk-size", "1MiB", "--store-timeout", storeTimeout.String(), "--log-level", "debug", "--log-file", "-")
	backup.waitLog(t, "chunk stored")
	m.Stop()
	stoppedAt := time.Now()
	select {
	case <-backup.done:
	case <-time.After(faultJobTimeout):
		t.Fatalf("bulkctl backup still running %s after minio stopped", faultJobTimeout)
	}
	after := time.Since(stoppedAt)
	out := backup.log()
	if code := backup.cmd.ProcessState.ExitCode(); code != exitError {
		t.Errorf("bulkctl backup exited %d, want %d; output:\n%s", code, exitError, out)
	}
	for _, want := range []string{"repository " + faultBucketRepo + " unavailable", "store timeout 3s"} {
		if !strings.Contains(out, want) {
			t.Errorf("bulkctl backup's output does not say %q", want)
		}
	}
	if after < storeTimeout {
		t.Errorf("the backup failed %s after minio stopped, before its store timeout of %s", after.Round(time.Millisecond), storeTimeout)
	}
	t.Logf("bulkctl backup failed %s after minio stopped", after.Round(time.Millisecond))
}

// storeRetries returns how often compressor p logged that it retries a
// chunk because the repository failed, and the longest it logged having
// waited for a chunk that it then stored.
func storeRetries(t *testing.T, p *proc) (int, time.Duration) {
	t.Helper()
	var (
		retries int
		longest time.Duration
	)
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	for sc.Scan() {
		var rec struct {
			Msg    string `json:"msg"`
			Waited int64  `json:"waited"` // nanoseconds
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "repository unavailable; retrying":
			retries++
		case "repository reachable again":
			longest = max(longest, time.Duration(rec.Waited))
		}
	}
	return retries, longest
}
