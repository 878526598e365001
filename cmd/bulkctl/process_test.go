package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The process-level tests build the four binaries and run a distributed
// fleet as separate OS processes on this machine: a coordinator embedding
// NATS on a free port, a reader for host "testhost", two compressors, and
// bulkctl submitting jobs to them.

// testTmp is the temporary directory of the bulkctls the tests run: the
// fleet logs that failed commands keep go there, not into the machine's.
var testTmp string

func TestMain(m *testing.M) {
	var err error
	if testTmp, err = os.MkdirTemp("", "bulkctl-test-tmp-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keptLogDir = func() string { return testTmp }
	code := m.Run()
	testenv.RemoveBinaries()
	os.RemoveAll(testTmp)
	os.Exit(code)
}

// proc is a service running as an OS process, its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, set before done closes
}

// startProc starts bin from the test binaries. The process is killed in
// cleanup if still running, and its log is printed if the test failed.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	return startExe(t, name, filepath.Join(testenv.Binaries(t), bin), args...)
}

// startExe is startProc for the executable at path.
func startExe(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	return startExeWith(t, name, path, nil, args...)
}

// startExeWith is startExe with setup, if not nil, applied to the command
// before it starts (to run it as another user, say).
func startExeWith(t *testing.T, name, path string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logPath: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.Env = append(os.Environ(), "TMPDIR="+testTmp)
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	t.Logf("started %s (pid %d): %s %s", name, p.cmd.Process.Pid, filepath.Base(path), strings.Join(args, " "))
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			data, _ := os.ReadFile(p.logPath)
			t.Logf("log of %s (%v):\n%s", p.name, p.err, data)
		}
	})
	return p
}

func (p *proc) log() string {
	data, _ := os.ReadFile(p.logPath)
	return string(data)
}

// waitLog waits until the process has logged a line containing s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log(), s) {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within 30s", p.name, s)
		}
		time.Sleep(50 * time.Millisecond) // polling a log, not synchronisation
	}
}

// errAddrInUse means a coordinator could not listen on its address.
var errAddrInUse = errors.New("address already in use")

// waitListening waits until the coordinator has logged that its embedded
// server listens (so the listener is its own, not another process's) and
// accepts connections on addr. It returns an error if the process exits
// or reports the address in use first.
func (p *proc) waitListening(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		log := p.log()
		if strings.Contains(log, "address already in use") {
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("%s on %s: %w", p.name, addr, errAddrInUse)
		}
		var err error
		if strings.Contains(log, "embedded NATS server listening") {
			var conn net.Conn
			if conn, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before listening on %s", p.name, p.err, addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s within 30s (%v)", p.name, addr, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a port, not synchronisation
	}
}

// startCoordinator starts a coordinator embedding NATS on a free port and
// waits until it listens; it returns the process and its NATS URL. A port
// found free can be taken (by another test's outgoing connection) before
// the coordinator binds it, so a start that fails that way is retried on
// another port.
func startCoordinator(t *testing.T, dataDir string, args ...string) (*proc, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := testenv.FreeAddr(t)
		p := startProc(t, fmt.Sprintf("coordinator-%d", attempt), "coordinator",
			append([]string{"--listen", addr, "--data", dataDir, "--log-format", "json"}, args...)...)
		err := p.waitListening(addr)
		if err == nil {
			return p, "nats://" + addr
		}
		if attempt == 3 || !errors.Is(err, errAddrInUse) {
			t.Fatal(err)
		}
		t.Logf("retrying on another port: %v", err)
	}
}

// stop sends SIGTERM to every process and checks each exits 0 within 30s.
func stop(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM %s: %v", p.name, err)
		}
	}
	deadline := time.After(30 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("%s exited with status %d after SIGTERM, want 0", p.name, code)
			}
		case <-deadline:
			t.Errorf("%s still running 30s after SIGTERM", p.name)
			return
		}
	}
}

// bulkctlProc runs the bulkctl binary to completion.
func bulkctlProc(t *testing.T, args ...string) result {
	t.Helper()
	return bulkctlProcEnv(t, nil, args...)
}

// bulkctlProcEnv runs the bulkctl binary to completion in environment env
// (nil: the test's).
func bulkctlProcEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runExeEnv(t, filepath.Join(testenv.Binaries(t), "bulkctl"), env, args...)
}

// runExe runs the executable at path to completion.
func runExe(t *testing.T, path string, args ...string) result {
	t.Helper()
	return runExeEnv(t, path, nil, args...)
}

// runExeEnv runs the executable at path to completion in environment env
// (nil: the test's).
func runExeEnv(t *testing.T, path string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	if env == nil {
		env = append(os.Environ(), "TMPDIR="+testTmp)
	}
	cmd.Stdout, cmd.Stderr, cmd.Env = &stdout, &stderr, env
	err := cmd.Run()
	r := result{code: -1, stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		r.code = 0
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		t.Fatalf("%s %s: %v", filepath.Base(path), strings.Join(args, " "), err)
	}
	t.Logf("%s %s: exit %d", filepath.Base(path), strings.Join(args, " "), r.code)
	return r
}

func bulkctlProcOK(t *testing.T, args ...string) result {
	t.Helper()
	r := bulkctlProc(t, args...)
	if r.code != 0 {
		t.Fatalf("bulkctl %s: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// compressorChunks returns the chunk count a compressor logged in its
// "compressor stopped" line.
func compressorChunks(t *testing.T, p *proc) int64 {
	t.Helper()
	return stoppedChunks(t, p, "compressor stopped")
}

// stoppedChunks returns the chunk count a service logged in its line msg.
func stoppedChunks(t *testing.T, p *proc, msg string) int64 {
	t.Helper()
	return stoppedChunksField(t, p, msg, "chunks")
}

// stoppedChunksField returns the count a service logged as field in its
// line msg.
func stoppedChunksField(t *testing.T, p *proc, msg, field string) int64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != msg {
			continue
		}
		if n, ok := rec[field].(float64); ok {
			return int64(n)
		}
	}
	t.Errorf("%s did not log %q with a count %s:\n%s", p.name, msg, field, p.log())
	return -1
}

func TestProcessFleet(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	// The reader compresses what one worker of its own has room for, and
	// hands the rest to the compressors.
	reader := startProc(t, "reader", "reader", "--nats", url, "--host", "testhost", "--log-format", "json", "--compress", "1")
	comp1 := startProc(t, "compressor-1", "compressor", "--nats", url, "--workers", "1", "--name", "comp1", "--log-format", "json")
	comp2 := startProc(t, "compressor-2", "compressor", "--nats", url, "--workers", "1", "--name", "comp2", "--log-format", "json")

	const size = 64 * mib
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), size, 21)
	repo := filepath.Join(dir, "repo")
	out := filepath.Join(dir, "out.img")

	// Both compressors must be bound to the raw queue before the job, or
	// the first could take every chunk.
	reader.waitLog(t, "reader serving")
	comp1.waitLog(t, "compressor serving")
	comp2.waitLog(t, "compressor serving")

	r := bulkctlProcOK(t, "backup", "testhost:"+vol, "-r", repo, "--nats", url, "--json", "--chunk-size", "1MiB")
	var res backupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("backup --json output %q: %v", r.stdout, err)
	}
	t.Logf("backup: %+v", res)
	if res.Source != "testhost:"+vol || res.SourceBytes != size || res.Chunks != size/mib || !snapshotIDRE.MatchString(res.SnapshotID) {
		t.Errorf("backup result %+v, want testhost:%s, %d bytes in %d chunks", res, vol, size, size/mib)
	}
	stored := int64(res.Chunks - res.ZeroChunks)
	if stored < 8 {
		t.Fatalf("only %d of %d chunks were not all zeros: too few to spread over two compressors", stored, res.Chunks)
	}

	bulkctlProcOK(t, "restore", "latest", "testhost:"+out, "-r", repo, "--nats", url)
	sameFile(t, vol, out)

	r = bulkctlProcOK(t, "verify", "latest", "-r", repo, "--compare", vol)
	if !strings.Contains(r.stdout, res.SnapshotID) || !strings.Contains(r.stdout, "OK") {
		t.Errorf("verify output:\n%s", r.stdout)
	}

	// A second restore onto the same target is refused without
	// --overwrite, by the reader on the target's host.
	r = bulkctlProc(t, "restore", "latest", "testhost:"+out, "-r", repo, "--nats", url)
	if r.code != exitError || !strings.Contains(r.stderr, "--overwrite") {
		t.Errorf("restore onto an existing file: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	sameFile(t, vol, out)

	// The coordinator's API: jobs, one job, a source's history.
	var jobs []queue.Job
	r = bulkctlProcOK(t, "jobs", "--nats", url, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil {
		t.Fatalf("jobs --json output %q: %v", r.stdout, err)
	}
	states := make(map[string]string)
	for _, j := range jobs {
		states[j.Kind+"/"+j.State] = j.ID
	}
	if len(jobs) != 3 || states["backup/succeeded"] != res.JobID || states["restore/succeeded"] == "" || states["restore/failed"] == "" {
		t.Errorf("jobs: %d jobs %v, want the backup, a succeeded and a failed restore", len(jobs), states)
	}
	var job queue.Job
	r = bulkctlProcOK(t, "job", res.JobID, "--nats", url, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job.SnapshotID != res.SnapshotID || job.Stats.SourceBytes != size {
		t.Errorf("job %s: %+v (%v), want snapshot %s of %d bytes", res.JobID, job, err, res.SnapshotID, size)
	}
	var runs []queue.Run
	r = bulkctlProcOK(t, "history", "testhost:"+vol, "--nats", url, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil || len(runs) != 1 ||
		runs[0].SnapshotID != res.SnapshotID || runs[0].State != queue.StateSucceeded || runs[0].SourceBytes != size {
		t.Errorf("history: %+v (%v), want one succeeded run of snapshot %s", runs, err, res.SnapshotID)
	}
	if r = bulkctlProc(t, "job", "no-such-job", "--nats", url); r.code != exitError || !strings.Contains(r.stderr, "no-such-job") {
		t.Errorf("job no-such-job: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r = bulkctlProc(t, "cancel", res.JobID, "--nats", url); r.code != exitError || !strings.Contains(r.stderr, "already ended") {
		t.Errorf("cancel of a finished job: exit %d, stderr:\n%s", r.code, r.stderr)
	}

	stop(t, comp1, comp2, reader, coord)
	// The reader's own compressor logs what it stored: as the reader read
	// them, and taken from the ready stream with workers to spare.
	n1, n2, here := compressorChunks(t, comp1), compressorChunks(t, comp2), compressorChunks(t, reader)
	t.Logf("chunks stored: by comp1 %d, comp2 %d, the reader's compressor %d, of %d not all zeros", n1, n2, here, stored)
	if n1 <= 0 || n2 <= 0 {
		t.Errorf("compressors stored %d and %d chunks, want both > 0", n1, n2)
	}
	if n1+n2+here < stored {
		t.Errorf("%d chunks stored in all, want at least the %d non-zero chunks", n1+n2+here, stored)
	}
}

// TestProcessReaderAlone backs up through a fleet with no compressor
// process: the reader compresses with one worker of its own, which also
// takes the chunks it could not store at once (announced for a compressor
// that never comes), so the backup completes and verifies.
func TestProcessReaderAlone(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	reader := startProc(t, "reader", "reader", "--nats", url, "--host", "alone", "--log-format", "json", "--compress", "1")
	reader.waitLog(t, "reader serving")
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 32*mib, 23)
	repo := filepath.Join(dir, "repo")
	r := bulkctlProcOK(t, "backup", "alone:"+vol, "-r", repo, "--nats", url, "--json", "--chunk-size", "1MiB")
	var res backupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("backup --json output %q: %v", r.stdout, err)
	}
	bulkctlProcOK(t, "verify", res.SnapshotID, "-r", repo, "--compare", vol)
	stop(t, reader, coord)
	stored := int64(res.Chunks - res.ZeroChunks)
	here, all := stoppedChunksField(t, reader, "reader stopped", "stored_here"), compressorChunks(t, reader)
	t.Logf("the reader's compressor stored %d chunks, %d of them as they were read, of %d not all zeros", all, here, stored)
	if all < stored || here <= 0 || here >= all {
		t.Errorf("the reader's compressor stored %d chunks, %d as they were read, of %d: want all, some (not all) of them at once, the others taken back from the ready stream", all, here, stored)
	}
}

func TestProcessBadRequests(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	// No reader runs: jobs give up on their host after 2s.
	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"), "--reader-timeout", "2s")
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 64*kib, 2)
	repo := filepath.Join(dir, "repo")

	t.Run("source without host", func(t *testing.T) {
		r := bulkctlProc(t, "backup", "vol.img", "--nats", url, "-r", repo)
		if r.code != exitUsage || !strings.Contains(r.stderr, "HOST:PATH") {
			t.Errorf("backup vol.img --nats: exit %d, want %d and a message asking for HOST:PATH; stderr:\n%s", r.code, exitUsage, r.stderr)
		}
	})

	t.Run("relative path on a host", func(t *testing.T) {
		r := bulkctlProc(t, "backup", "testhost:vol.img", "--nats", url, "-r", repo)
		if r.code != exitUsage || !strings.Contains(r.stderr, "absolute") {
			t.Errorf("backup testhost:vol.img: exit %d, want %d and a message asking for an absolute path; stderr:\n%s", r.code, exitUsage, r.stderr)
		}
	})

	t.Run("host without reader", func(t *testing.T) {
		start := time.Now()
		r := bulkctlProc(t, "backup", "ghosthost:"+vol, "--nats", url, "-r", repo)
		if r.code != exitError || !strings.Contains(r.stderr, `"ghosthost"`) || !strings.Contains(r.stderr, "no reader") {
			t.Errorf("backup from a host without reader: exit %d, want %d and a message naming ghosthost; stderr:\n%s", r.code, exitError, r.stderr)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("backup took %s to give up, want about the 2s reader timeout", d)
		}
		out := filepath.Join(dir, "out.img")
		r = bulkctlProc(t, "restore", "latest", "ghosthost:"+out, "--nats", url, "-r", repo)
		if r.code != exitError {
			t.Errorf("restore to a host without reader: exit %d, want %d; stderr:\n%s", r.code, exitError, r.stderr)
		}
		noFile(t, out)
	})

	stop(t, coord)
}

// TestProcessWorkers checks the fleet view: workers announce themselves,
// one that joins shows up, one that is killed drops off after the TTL.
func TestProcessWorkers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	coord, url := startCoordinator(t, filepath.Join(t.TempDir(), "jetstream"), "--worker-ttl", "2s")
	// --compress 0: a reader that compresses is listed as a compressor
	// too (reader-viewhost), which this test does not count.
	reader := startProc(t, "reader", "reader", "--nats", url, "--host", "viewhost", "--log-format", "json", "--compress", "0")
	comp1 := startProc(t, "compressor-1", "compressor", "--nats", url, "--workers", "1", "--name", "view1", "--log-format", "json")

	// workersNow lists the fleet as bulkctl sees it, by role and id.
	workersNow := func() map[string]queue.WorkerStatus {
		r := bulkctlProc(t, "workers", "--nats", url, "--json")
		if r.code != 0 { // the coordinator may not serve its API yet
			return nil
		}
		var ws []queue.WorkerStatus
		if err := json.Unmarshal([]byte(r.stdout), &ws); err != nil {
			t.Fatalf("workers --json output %q: %v", r.stdout, err)
		}
		m := make(map[string]queue.WorkerStatus)
		for _, w := range ws {
			m[w.Role+"/"+w.ID] = w
		}
		return m
	}
	waitFleet := func(what string, ok func(map[string]queue.WorkerStatus) bool) map[string]queue.WorkerStatus {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ws := workersNow()
			if ok(ws) {
				return ws
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s; workers: %+v", what, ws)
			}
			time.Sleep(200 * time.Millisecond) // polling the fleet view
		}
	}
	ws := waitFleet("the reader and one compressor", func(ws map[string]queue.WorkerStatus) bool {
		return len(ws) == 2 && ws["compressor/view1"].Role == queue.RoleCompressor
	})
	for _, w := range ws {
		if w.Role == queue.RoleReader && w.Host != "viewhost" || w.Version == "" || w.LastSeen.IsZero() {
			t.Errorf("worker %+v: want host viewhost for the reader, a version and a last-seen time", w)
		}
	}

	comp2 := startProc(t, "compressor-2", "compressor", "--nats", url, "--workers", "1", "--name", "view2", "--log-format", "json")
	waitFleet("the joining compressor", func(ws map[string]queue.WorkerStatus) bool {
		_, ok := ws["compressor/view2"]
		return ok && len(ws) == 3
	})
	kill(t, comp2)
	waitFleet("the killed compressor to drop off", func(ws map[string]queue.WorkerStatus) bool {
		_, ok := ws["compressor/view2"]
		return !ok && len(ws) == 2
	})
	stop(t, comp1, reader, coord)
}
