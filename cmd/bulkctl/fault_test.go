package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The fault tests run the fleet as OS processes (see process_test.go),
// submit a backup of a volume large enough to take a while, and strike when
// a quarter of its stored chunks are done: they kill or stop a compressor,
// the coordinator (and with it the NATS server it embeds), or the S3
// server. Each asserts that the job still ends in one whole, verified
// snapshot. The strike follows the job's completions on the done subject,
// which every chunk reports, rather than sleeping.
//
// They run one after another: each keeps both CPUs busy, and running them
// side by side would only make them slower.

const (
	faultChunkSize = mib
	faultHost      = "testhost"
	// faultJobTimeout bounds one job, fault and recovery included.
	faultJobTimeout = 90 * time.Second
)

// faultVolumeSize returns a volume size big enough that a backup through
// compressors with one worker each is mid-way when the test strikes:
// 128 MiB, which takes about a second, or a quarter of that under the race
// detector, which slows compression about twentyfold, so that chunks do not
// queue for longer than the coordinator's short chunk timeout allows.
func faultVolumeSize() int64 {
	if testenv.RaceEnabled {
		return 32 * mib
	}
	return 128 * mib
}

// faultEnv is one fault test's fleet and the test's own NATS client.
type faultEnv struct {
	dir      string
	dataDir  string // the coordinator's JetStream directory
	coord    *proc
	url      string
	reader   *proc
	vol      string
	size     int64
	nonZero  int // chunks of vol that are not all zeros, so get stored
	repo     string
	nc       *nats.Conn
	js       jetstream.JetStream
	coordArg []string
}

// newFaultEnv starts a coordinator (with coordArgs) and a reader for
// faultHost, writes the volume and connects the test's client. It starts no
// compressor.
func newFaultEnv(t *testing.T, repo string, coordArgs ...string) *faultEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	dir := t.TempDir()
	size := faultVolumeSize()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), size, 31)
	nonZero := nonZeroChunks(t, vol, faultChunkSize)
	if nonZero < 16 {
		t.Fatalf("only %d of %d chunks are not all zeros: too few to strike mid-way", nonZero, size/faultChunkSize)
	}
	e := newFaultFleet(t, dir, repo, coordArgs...)
	e.vol, e.size, e.nonZero = vol, size, nonZero
	return e
}

// newFaultFleet starts, for a test whose files are in dir, a coordinator
// (with coordArgs) and a reader for faultHost, and connects the test's
// client. It starts no compressor; repo "" means a directory in dir.
func newFaultFleet(t *testing.T, dir, repo string, coordArgs ...string) *faultEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	e := &faultEnv{dir: dir, coordArg: coordArgs}
	e.dataDir = filepath.Join(e.dir, "jetstream")
	e.repo = repo
	if e.repo == "" {
		e.repo = filepath.Join(e.dir, "repo")
	}
	e.coord, e.url = startCoordinator(t, e.dataDir, coordArgs...)
	e.reader = startFaultReader(t, "reader", e.url)
	e.connect(t)
	return e
}

// startFaultReader starts a reader for faultHost that compresses nothing
// itself (--compress 0), so that every chunk goes through the compressors
// the fault tests strike, and waits until it serves.
func startFaultReader(t *testing.T, name, url string, args ...string) *proc {
	t.Helper()
	p := startProc(t, name, "reader", append([]string{"--nats", url, "--host", faultHost, "--log-format", "json", "--compress", "0"}, args...)...)
	p.waitLog(t, "reader serving")
	return p
}

// connect connects the test's client to the coordinator's NATS. The client
// reconnects on its own when the server comes back.
func (e *faultEnv) connect(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(e.url, nats.Name("fault-test"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to %s: %v", e.url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.nc, e.js = nc, js
}

// startCompressor starts a compressor with one worker and waits until it
// serves.
func (e *faultEnv) startCompressor(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := startProc(t, name, "compressor", append([]string{"--nats", e.url, "--workers", "1", "--name", name, "--log-format", "json"}, args...)...)
	p.waitLog(t, "compressor serving")
	return p
}

// backup submits a backup of the volume under a job ID of the test's
// choosing and returns a watch on its completions, subscribed before the
// job is submitted so none is missed.
func (e *faultEnv) backup(t *testing.T) (string, *doneWatch) {
	t.Helper()
	jobID := newJobID()
	w := watchDone(t, e.nc, jobID)
	req := &queue.BackupRequest{
		V: queue.MessageVersion, JobID: jobID, Source: queue.Endpoint{Host: faultHost, Path: e.vol},
		Repo: e.repo, ChunkSize: faultChunkSize, Level: "fastest",
	}
	if err := queue.Submit(t.Context(), e.js, queue.SubjectRequestBackup, req, jobID); err != nil {
		t.Fatal(err)
	}
	t.Logf("submitted backup job %s of %s (%d chunks, %d not all zeros)", jobID, e.vol, e.size/faultChunkSize, e.nonZero)
	return jobID, w
}

// strikePoint is how many stored chunks are done when a test strikes.
func (e *faultEnv) strikePoint() int { return e.nonZero / 4 }

// wait follows job jobID to its final event. It starts over when following
// fails (the server restarted under it), replaying the events from the
// first, until faultJobTimeout.
func (e *faultEnv) wait(t *testing.T, jobID string) *queue.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), faultJobTimeout)
	defer cancel()
	for {
		ev, err := queue.Follow(ctx, e.js, jobID, nil)
		if err == nil {
			return ev
		}
		if ctx.Err() != nil {
			t.Fatalf("job %s did not end within %s: %v", jobID, faultJobTimeout, err)
		}
		t.Logf("following job %s: %v; following again", jobID, err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// check asserts that the job succeeded into exactly one snapshot in the
// repository, holding every chunk, that verifies against the volume byte
// for byte.
func (e *faultEnv) check(t *testing.T, ev *queue.Event) {
	t.Helper()
	if ev.State != queue.StateSucceeded {
		t.Fatalf("job %s ended %s: %s", ev.JobID, ev.State, ev.Error)
	}
	r := bulkctlProcOK(t, "snapshots", "-r", e.repo, "--json")
	var snaps []snapshotEntry
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatalf("snapshots --json output %q: %v", r.stdout, err)
	}
	if len(snaps) != 1 {
		t.Fatalf("repository holds %d snapshots, want exactly 1: %+v", len(snaps), snaps)
	}
	if s := snaps[0]; s.ID != ev.SnapshotID || s.Size != e.size || int64(s.Chunks) != e.size/faultChunkSize {
		t.Errorf("snapshot %+v, want ID %s with %d bytes in %d chunks", s, ev.SnapshotID, e.size, e.size/faultChunkSize)
	}
	r = bulkctlProcOK(t, "verify", "latest", "-r", e.repo, "--compare", e.vol)
	if !strings.Contains(r.stdout, ev.SnapshotID) || !strings.Contains(r.stdout, "OK") {
		t.Errorf("verify output:\n%s", r.stdout)
	}
}

// nonZeroChunks counts the chunks of size n of the file at path that are
// not all zeros.
func nonZeroChunks(t *testing.T, path string, n int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	count := 0
	for {
		m, err := io.ReadFull(f, buf)
		if m > 0 && !chunk.IsZero(buf[:m]) {
			count++
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return count
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// doneWatch counts a job's completions as they are recorded on its done
// subjects: stored chunks, each counted once, in all and per worker, the
// completions that stored a chunk again, and every completion by kind.
type doneWatch struct {
	mu       sync.Mutex
	stored   map[int]bool
	repeats  map[int]int // chunk index -> completions after its first
	byWorker map[string]int
	kinds    map[string]int // completion kind (queue.Done*) -> completions
	scans    []int          // Attempt of each completed scan
	failed   []string
	changed  chan struct{} // closed and replaced at each new completion
}

func watchDone(t *testing.T, nc *nats.Conn, jobID string) *doneWatch {
	t.Helper()
	w := &doneWatch{
		stored: make(map[int]bool), repeats: make(map[int]int), byWorker: make(map[string]int), kinds: make(map[string]int),
		changed: make(chan struct{}),
	}
	sub, err := nc.Subscribe(queue.DoneFilter(jobID), func(m *nats.Msg) {
		d, err := queue.DecodeDone(m.Subject, m.Data)
		if err != nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.kinds[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]++
		switch d := d.(type) {
		case *queue.ScanDone:
			w.scans = append(w.scans, d.Attempt)
		case *queue.WorkFailed:
			w.failed = append(w.failed, fmt.Sprintf("%s %d: %s (%s)", d.Op, d.Index, d.Message, d.Code))
		case *queue.ChunkDone:
			switch {
			case d.Zero:
				return
			case w.stored[d.Index]:
				w.repeats[d.Index]++
				return
			default:
				w.stored[d.Index] = true
				w.byWorker[d.Worker]++
			}
		}
		close(w.changed)
		w.changed = make(chan struct{})
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// until waits until at least n stored chunks are done, at most 60s, and
// fails the test if a chunk failed first.
func (w *doneWatch) until(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		w.mu.Lock()
		got, failed, changed := len(w.stored), w.failed, w.changed
		w.mu.Unlock()
		if len(failed) > 0 {
			t.Fatalf("chunks failed: %s", strings.Join(failed, "; "))
		}
		if got >= n {
			t.Logf("%d stored chunks done", got)
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("only %d stored chunks done after 60s, waiting for %d", got, n)
		}
	}
}

// count returns how many completions of kind (a queue.Done* constant) were
// recorded.
func (w *doneWatch) count(kind string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kinds[kind]
}

// waitCount waits until at least n completions of kind are recorded, at
// most 60s.
func (w *doneWatch) waitCount(t *testing.T, kind string, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		w.mu.Lock()
		got, changed := w.kinds[kind], w.changed
		w.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("only %d completions of %s after 60s, waiting for %d", got, kind, n)
		}
	}
}

// scanAttempts returns the attempt of each completed scan, in order.
func (w *doneWatch) scanAttempts() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.scans)
}

// counts returns the stored chunks done in all and by worker.
func (w *doneWatch) counts() (int, map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	by := make(map[string]int, len(w.byWorker))
	for k, v := range w.byWorker {
		by[k] = v
	}
	return len(w.stored), by
}

// storedSet returns the indexes of the stored chunks done so far.
func (w *doneWatch) storedSet() map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := make(map[int]bool, len(w.stored))
	for i := range w.stored {
		set[i] = true
	}
	return set
}

// repeated returns the chunks of set that were stored more than once.
func (w *doneWatch) repeated(set map[int]bool) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var again []int
	for i, n := range w.repeats {
		if set[i] && n > 0 {
			again = append(again, i)
		}
	}
	slices.Sort(again)
	return again
}

// kill sends SIGKILL to p and waits for it to exit.
func kill(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
	t.Logf("killed %s", p.name)
}

// stillRunning fails the test if p has exited.
func stillRunning(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.done:
		t.Errorf("%s exited (%v), want it running", p.name, p.err)
	default:
	}
}

func TestFaultCompressorKilled(t *testing.T) {
	e := newFaultEnv(t, "", "--chunk-timeout", "5s")
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	kill(t, comp2)
	doneAtKill, atKill := w.counts()
	if atKill["comp2"] == 0 {
		t.Errorf("comp2 had stored no chunk when it was killed (%v): want it killed while working", atKill)
	}

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s", ev.State, time.Since(start).Round(time.Millisecond))
	e.check(t, ev)
	if _, by := w.counts(); by["comp1"] == 0 || doneAtKill >= e.nonZero {
		t.Errorf("comp2 killed with %d of %d stored chunks done, comp1 stored %d: want the kill mid-job", doneAtKill, e.nonZero, by["comp1"])
	}

	out := filepath.Join(e.dir, "out.img")
	bulkctlProcOK(t, "restore", "latest", faultHost+":"+out, "-r", e.repo, "--nats", e.url)
	sameFile(t, e.vol, out)
	stop(t, comp1, e.reader, e.coord)
}

func TestFaultCompressorTerminated(t *testing.T) {
	e := newFaultEnv(t, "")
	const drain = 10 * time.Second
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2", "--drain-timeout", drain.String())
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	if err := comp2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	select {
	case <-comp2.done:
		t.Logf("comp2 exited %d, %s after SIGTERM", comp2.cmd.ProcessState.ExitCode(), time.Since(termAt).Round(time.Millisecond))
		if code := comp2.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("comp2 exited with status %d after SIGTERM, want 0", code)
		}
	case <-time.After(drain + 5*time.Second):
		t.Fatalf("comp2 still running %s after SIGTERM, with a drain timeout of %s", drain+5*time.Second, drain)
	}
	if n := compressorChunks(t, comp2); n <= 0 {
		t.Errorf("comp2 stopped having stored %d chunks, want some: the strike was not mid-job", n)
	}

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s, %s after SIGTERM", ev.State, time.Since(start).Round(time.Millisecond), time.Since(termAt).Round(time.Millisecond))
	e.check(t, ev)
	// What comp2 had pulled but not started is handed back at once, not
	// left to the compressors' one-minute ack wait (the coordinator's
	// chunk timeout is the default two minutes here, so it does not step
	// in either).
	if d := time.Since(termAt); d > 30*time.Second {
		t.Errorf("job ended %s after comp2's SIGTERM: chunks it had pulled waited for their ack wait to expire", d.Round(time.Second))
	}
	stop(t, comp1, e.reader, e.coord)
}

func TestFaultCoordinatorKilled(t *testing.T) {
	// A short chunk timeout re-issues quickly the chunks whose raw data
	// was lost with the memory stream.
	e := newFaultEnv(t, "", "--chunk-timeout", "5s")
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	kill(t, e.coord)
	doneAtKill, _ := w.counts()
	addr := strings.TrimPrefix(e.url, "nats://")
	e.coord = restartCoordinator(t, addr, e.dataDir, e.coordArg...)
	e.coord.waitLog(t, "resuming job")

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s; %d of %d stored chunks were done at the kill", ev.State, time.Since(start).Round(time.Millisecond), doneAtKill, e.nonZero)
	e.check(t, ev)
	if doneAtKill >= e.nonZero {
		t.Errorf("coordinator killed with %d of %d stored chunks done: want the kill mid-job", doneAtKill, e.nonZero)
	}
	// The services outlived the server and reconnected on their own.
	for _, p := range []*proc{e.reader, comp1, comp2} {
		stillRunning(t, p)
		if !strings.Contains(p.log(), "nats reconnected") {
			t.Errorf("%s did not log that it reconnected", p.name)
		}
	}
	stop(t, comp1, comp2, e.reader, e.coord)
}

// restartCoordinator starts a coordinator again on addr with its JetStream
// directory, retrying while the old process's port is still held.
func restartCoordinator(t *testing.T, addr, dataDir string, args ...string) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := startProc(t, fmt.Sprintf("coordinator-restarted-%d", attempt), "coordinator",
			append([]string{"--listen", addr, "--data", dataDir, "--log-format", "json"}, args...)...)
		err := p.waitListening(addr)
		if err == nil {
			return p
		}
		if attempt == 10 || !errors.Is(err, errAddrInUse) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the port was taken meanwhile: pick another
	}
}

func TestFaultCompressorAdded(t *testing.T) {
	e := newFaultEnv(t, "")
	comp1 := e.startCompressor(t, "comp1")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	comp2 := e.startCompressor(t, "comp2")

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s", ev.State, time.Since(start).Round(time.Millisecond))
	e.check(t, ev)
	stop(t, comp1, comp2, e.reader, e.coord)
	n1, n2 := compressorChunks(t, comp1), compressorChunks(t, comp2)
	t.Logf("compressor chunks: comp1 %d, comp2 %d, of %d stored", n1, n2, e.nonZero)
	if n2 <= 0 {
		t.Errorf("comp2, added mid-job, stored %d chunks, want some", n2)
	}
	if n1 <= 0 || n1+n2 < int64(e.nonZero) {
		t.Errorf("compressors stored %d + %d chunks, want at least the %d not all zeros", n1, n2, e.nonZero)
	}
}
