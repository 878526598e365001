package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The files-mode fault tests back up a directory tree file by file and
// strike in one of its two phases: while the reader scans the tree (it
// reports the listing in batches, then the scan's end), or while readers
// read packs of file pieces and compressors store them. Each checks that
// the job ends in one snapshot whose restore, through the fleet, equals the
// tree in content, permissions, owners and mtimes.

// faultTreeChunk packs a tree into many small chunks, so a backup of a few
// MiB has hundreds of them and is mid-way when the test strikes.
const faultTreeChunk = 64 * kib

// writeFaultTree writes files regular files under root, spread over nested
// directories, each under maxSize bytes but every big-th (if big > 0), which
// spans several chunks; a symlink in each top directory; four permission
// modes; and distinct old mtimes, set last. The content is compressible and
// differs from file to file. It returns the bytes written.
func writeFaultTree(t *testing.T, root string, files, maxSize, big int) int64 {
	t.Helper()
	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(files), uint64(maxSize)))
	var seed [32]byte
	seed[0] = byte(files)
	content := rand.NewChaCha8(seed)
	letters := []byte("abcdefgh\n")
	modes := []os.FileMode{0o644, 0o600, 0o755, 0o640} // none changed by the usual umask 022
	for d := range 30 {
		top := filepath.Join(root, fmt.Sprintf("d%02d", d))
		for e := range 4 {
			if err := os.MkdirAll(filepath.Join(top, fmt.Sprintf("e%d", e)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(filepath.Join("e0", fmt.Sprintf("f%05d.txt", d)), filepath.Join(top, "link")); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for i := range files {
		p := filepath.Join(root, fmt.Sprintf("d%02d", i%30), fmt.Sprintf("e%d", i/30%4), fmt.Sprintf("f%05d.txt", i))
		n := rng.IntN(maxSize)
		if big > 0 && i%big == big-1 {
			n = 3*faultTreeChunk + rng.IntN(faultTreeChunk)
		}
		data := make([]byte, n)
		_, _ = content.Read(data)
		for j, b := range data {
			data[j] = letters[int(b)%len(letters)]
		}
		if err := os.WriteFile(p, data, modes[i%len(modes)]); err != nil {
			t.Fatal(err)
		}
		total += int64(n)
	}
	// Deepest first, so setting a directory's mtime is not undone by work
	// inside it.
	var paths []string
	if err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i := len(paths) - 1; i >= 0; i-- {
		mt := time.Date(2021, 3, 4, 5, 6, 7, i*1000+7, time.UTC).UnixNano()
		ts := []unix.Timespec{unix.NsecToTimespec(mt), unix.NsecToTimespec(mt)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote a tree of %d files, %d KiB, in %s", files, total/kib, time.Since(start).Round(time.Millisecond))
	return total
}

// treeEntry is what the tree comparison checks of one entry.
type treeEntry struct {
	Type     string
	Mode     uint32
	UID, GID uint32
	MTime    int64
	Size     int64
	Target   string
	Sum      [32]byte
}

// describeTree returns every entry under root by relative path.
func describeTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := make(map[string]treeEntry)
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := treeEntry{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
		switch {
		case fi.Mode().IsRegular():
			e.Type, e.Size = "file", fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.Sum[:], h.Sum(nil))
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type, e.Mode = "symlink", 0 // a symlink's mode means nothing on Linux
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.Type = "special"
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails unless the trees at want and got hold the same entries,
// root included, with the same content and metadata; owners only as root,
// who alone restores them.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	start := time.Now()
	w, g := describeTree(t, want), describeTree(t, got)
	asRoot := os.Geteuid() == 0
	differ := 0
	for p, we := range w {
		ge, ok := g[p]
		if !asRoot {
			we.UID, we.GID, ge.UID, ge.GID = 0, 0, 0, 0
		}
		switch {
		case !ok:
			t.Errorf("%s: missing from the restored tree", p)
		case we != ge:
			t.Errorf("%s differs:\nwant %+v\n got %+v", p, we, ge)
		default:
			continue
		}
		if differ++; differ == 10 {
			t.Fatalf("and more: the trees differ in at least %d entries", differ)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: restored, but not in the source", p)
		}
	}
	t.Logf("restored tree equals the source: %d entries, compared in %s", len(w), time.Since(start).Round(time.Millisecond))
}

// treeBackup submits a files-mode backup of the tree src and returns its
// job ID and a watch on its completions, subscribed before the job is
// submitted.
func (e *faultEnv) treeBackup(t *testing.T, src string) (string, *doneWatch) {
	t.Helper()
	jobID := newJobID()
	w := watchDone(t, e.nc, jobID)
	req := &queue.BackupRequest{
		V: queue.MessageVersion, JobID: jobID, Source: queue.Endpoint{Host: faultHost, Path: src},
		Repo: e.repo, ChunkSize: faultTreeChunk, Level: "fastest", Mode: "files",
	}
	if err := queue.Submit(t.Context(), e.js, queue.SubjectRequestBackup, req, jobID); err != nil {
		t.Fatal(err)
	}
	t.Logf("submitted files-mode backup job %s of %s", jobID, src)
	return jobID, w
}

// packs returns how many packs a files-mode job reads: its record holds
// the count once the scan is planned, before any pack is published.
func (e *faultEnv) packs(t *testing.T, jobID string) int {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	var job queue.Job
	if err := queue.Decode(entry.Value(), &job); err != nil {
		t.Fatal(err)
	}
	if job.Progress.ChunksTotal < 16 {
		t.Fatalf("job %s reads %d packs: too few to strike mid-way", jobID, job.Progress.ChunksTotal)
	}
	return job.Progress.ChunksTotal
}

// checkTree asserts that the job succeeded into exactly one snapshot, and
// that the snapshot, restored through the fleet, equals the tree src.
func (e *faultEnv) checkTree(t *testing.T, ev *queue.Event, src string) {
	t.Helper()
	if ev.State != queue.StateSucceeded {
		t.Fatalf("job %s ended %s: %s", ev.JobID, ev.State, ev.Error)
	}
	if len(ev.Warnings) > 0 {
		t.Errorf("job %s warned: %q", ev.JobID, ev.Warnings)
	}
	r := bulkctlProcOK(t, "snapshots", "-r", e.repo, "--json")
	var snaps []snapshotEntry
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatalf("snapshots --json output %q: %v", r.stdout, err)
	}
	if len(snaps) != 1 || snaps[0].ID != ev.SnapshotID {
		t.Fatalf("repository holds snapshots %+v, want exactly %s", snaps, ev.SnapshotID)
	}
	out := filepath.Join(e.dir, "restored")
	start := time.Now()
	bulkctlProcOK(t, "restore", "latest", faultHost+":"+out, "-r", e.repo, "--nats", e.url)
	t.Logf("restored through the fleet in %s", time.Since(start).Round(time.Millisecond))
	sameTree(t, src, out)
}

// TestFaultTreeCoordinatorKilled kills the coordinator (and the NATS server
// it embeds) while a tree's packs are read and stored, and starts it again
// on the same data directory: the job resumes from the completions it
// recorded, without scanning again or starting the packs over, and its
// snapshot restores to the tree.
func TestFaultTreeCoordinatorKilled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	size := writeFaultTree(t, src, 3000, 8*kib, 100)
	// The resumed job publishes again at once every pack not stored,
	// including those whose raw data was lost with the memory stream, so it
	// does not need the chunk timeout. The compressors take 5 to 10 s to
	// come back (a completion in flight at the kill waits out its publish
	// timeout, and a consumer of the lost raw stream is noticed by missed
	// heartbeats); a chunk timeout shorter than that re-issues every
	// outstanding pack and they store each twice (with 5s: 386 items
	// re-issued, 617 chunks stored after the kill for 300 packs).
	e := newFaultFleet(t, dir, "", "--chunk-timeout", "20s")
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.treeBackup(t, src)

	w.until(t, 1) // packs are read only once the scan is planned
	total := e.packs(t, jobID)
	t.Logf("3000 files, %d MiB, in %d packs of at most %d KiB", size/mib, total, faultTreeChunk/kib)
	w.until(t, total/4)
	kill(t, e.coord)
	storedAtKill, scansAtKill := w.storedSet(), w.count(queue.DoneScanPart)
	addr := strings.TrimPrefix(e.url, "nats://")
	e.coord = restartCoordinator(t, addr, e.dataDir, e.coordEnv, e.coordArg...)
	e.coord.waitLog(t, "resuming job")

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s; %d of %d packs were stored at the kill", ev.State, time.Since(start).Round(time.Millisecond), len(storedAtKill), total)
	e.checkTree(t, ev, src)
	stop(t, comp1, comp2, e.reader, e.coord)

	if len(storedAtKill) >= total {
		t.Errorf("coordinator killed with %d of %d packs stored: want the kill mid-read", len(storedAtKill), total)
	}
	if p := ev.Progress; p.ChunksDone != total || p.ChunksTotal != total {
		t.Errorf("final progress: %d of %d packs done, want %d of %d: the packs done before the kill are not counted", p.ChunksDone, p.ChunksTotal, total, total)
	}
	// Resumed, not started over: the compressors stored fewer chunks after
	// the kill than the job has packs.
	stored := compressorChunks(t, comp1) + compressorChunks(t, comp2)
	after := stored - int64(len(storedAtKill))
	again := w.repeated(storedAtKill)
	reissued := strings.Count(e.coord.log(), `"msg":"re-issuing work"`)
	t.Logf("compressors stored %d chunks, %d after the kill, of %d packs; %d packs stored before the kill were stored again: %v; the restarted coordinator re-issued %d items",
		stored, after, total, len(again), again, reissued)
	if after >= int64(total) {
		t.Errorf("compressors stored %d chunks after the kill, %d packs in all: the job started over", after, total)
	}
	if n := w.count(queue.DoneScanPart); n != scansAtKill {
		t.Errorf("%d scan batches after the kill, want none: the resumed job scanned the tree again", n-scansAtKill)
	}
	if !strings.Contains(e.coord.log(), `"msg":"replayed completions"`) {
		t.Error("the restarted coordinator did not log that it replayed the job's completions")
	}
}

// TestFaultTreeReaderKilledInScan kills the reader while it reports the
// listing of a tree of 20,000 files, and starts it again: the coordinator
// re-issues the scan after its chunk timeout, the batches of the killed
// scan do not mix into the listing, and the snapshot restores to the tree.
func TestFaultTreeReaderKilledInScan(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFaultTree(t, src, 20000, 256, 0)
	const chunkTimeout = 3 * time.Second
	e := newFaultFleet(t, dir, "", "--chunk-timeout", chunkTimeout.String())
	comp := e.startCompressor(t, "comp1")
	start := time.Now()
	jobID, w := e.treeBackup(t, src)

	w.waitCount(t, queue.DoneScanPart, 1)
	kill(t, e.reader)
	killedAt := time.Now()
	partsAtKill, scansAtKill := w.count(queue.DoneScanPart), w.count(queue.DoneScan)
	t.Logf("reader killed after %d scan batches", partsAtKill)
	if scansAtKill > 0 {
		t.Fatalf("the scan had ended (%d completions) before the kill: the tree is listed too fast to strike mid-scan", scansAtKill)
	}
	e.reader = startFaultReader(t, "reader-restarted", e.url, e.workerEnv)

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s, %s after the kill (chunk timeout %s)", ev.State, time.Since(start).Round(time.Millisecond),
		time.Since(killedAt).Round(time.Millisecond), chunkTimeout)
	e.checkTree(t, ev, src)
	stop(t, comp, e.reader, e.coord)

	// The listing came from a scan the coordinator re-issued.
	attempts := w.scanAttempts()
	t.Logf("scan batches: %d before the kill, %d in all; scans completed with attempts %v", partsAtKill, w.count(queue.DoneScanPart), attempts)
	if len(attempts) == 0 || attempts[0] < 1 {
		t.Errorf("scans completed with attempts %v, want the first a re-issued one (attempt 1 or more)", attempts)
	}
	reissued := false
	for _, line := range strings.Split(e.coord.log(), "\n") {
		reissued = reissued || strings.Contains(line, `"msg":"re-issuing work"`) && strings.Contains(line, `"op":"scan"`)
	}
	if !reissued {
		t.Error("the coordinator did not log that it re-issued the scan")
	}
}

// TestFaultTreeCompressorKilled kills one of two compressors mid-way
// through a tree's packs: its unacknowledged packs go to the other, and the
// snapshot restores to the tree.
func TestFaultTreeCompressorKilled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFaultTree(t, src, 3000, 8*kib, 100)
	e := newFaultFleet(t, dir, "", "--chunk-timeout", "5s")
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.treeBackup(t, src)

	w.until(t, 1)
	total := e.packs(t, jobID)
	w.until(t, total/4)
	kill(t, comp2)
	doneAtKill, atKill := w.counts()

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s; %d of %d packs were stored at the kill", ev.State, time.Since(start).Round(time.Millisecond), doneAtKill, total)
	e.checkTree(t, ev, src)
	stop(t, comp1, e.reader, e.coord)
	if _, by := w.counts(); atKill["comp2"] == 0 || by["comp1"] == 0 || doneAtKill >= total {
		t.Errorf("comp2 killed with %d of %d packs stored, %d by itself; comp1 stored %d: want the kill mid-job", doneAtKill, total, atKill["comp2"], by["comp1"])
	}
}
