package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestFaultReaderKilled kills the reader mid-backup and starts it again:
// the job goes on from the chunks not yet stored, none stored before the
// kill is stored again, and the snapshot verifies.
func TestFaultReaderKilled(t *testing.T) { cryptModes(t, testFaultReaderKilled) }

func testFaultReaderKilled(t *testing.T, encrypted bool) {
	// The chunk timeout re-issues at once the items the dead reader held.
	e := newFaultEnvCrypt(t, "", encrypted, "--chunk-timeout", "5s")
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	kill(t, e.reader)
	storedAtKill := w.storedSet()
	e.reader = startFaultReader(t, "reader-restarted", e.url, e.workerEnv)

	ev := e.wait(t, jobID)
	total := e.size / faultChunkSize
	t.Logf("job ended %s in %s; %d of %d stored chunks were done at the kill", ev.State, time.Since(start).Round(time.Millisecond), len(storedAtKill), e.nonZero)
	e.check(t, ev)
	stop(t, comp1, comp2, e.reader, e.coord)

	if len(storedAtKill) >= e.nonZero {
		t.Errorf("reader killed with %d of %d stored chunks done: want the kill mid-job", len(storedAtKill), e.nonZero)
	}
	if again := w.repeated(storedAtKill); len(again) > 0 {
		t.Errorf("chunks %v, stored before the kill, were stored again after it", again)
	}
	// The restarted reader read what was left, not the volume from the
	// start: at most the chunks not stored at the kill, plus the items the
	// coordinator re-issued (those the dead reader held).
	reissued := int64(strings.Count(e.coord.log(), `"msg":"re-issuing work"`))
	read := stoppedChunks(t, e.reader, "reader stopped")
	t.Logf("restarted reader handled %d of %d chunks; the coordinator re-issued %d items", read, total, reissued)
	if read <= 0 || read > total-int64(len(storedAtKill))+reissued {
		t.Errorf("restarted reader handled %d chunks, want between 1 and %d (%d not stored at the kill + %d re-issued)",
			read, total-int64(len(storedAtKill))+reissued, total-int64(len(storedAtKill)), reissued)
	}
}

// TestFaultReaderLost kills the reader mid-backup for good: the job fails
// once nothing has completed for the stall timeout, with an error naming
// the reader, and commits no snapshot.
func TestFaultReaderLost(t *testing.T) {
	const stall = 5 * time.Second
	e := newFaultEnv(t, "", "--stall-timeout", stall.String())
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	kill(t, e.reader)
	killedAt := time.Now()
	doneAtKill, _ := w.counts()

	ev := e.wait(t, jobID)
	t.Logf("job ended %s %s after the kill (stall timeout %s): %s", ev.State, time.Since(killedAt).Round(time.Millisecond), stall, ev.Error)
	if ev.State != queue.StateFailed || !strings.Contains(ev.Error, "stalled") || !strings.Contains(ev.Error, `reader of host "`+faultHost+`" is gone`) {
		t.Errorf("job ended %s with error %q, want failed, naming the stall and the reader of %s", ev.State, ev.Error, faultHost)
	}
	if doneAtKill >= e.nonZero {
		t.Errorf("reader killed with %d of %d stored chunks done: want the kill mid-job", doneAtKill, e.nonZero)
	}
	r := bulkctlProcOK(t, "snapshots", "-r", e.repo, "--json")
	var snaps []snapshotEntry
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil || len(snaps) != 0 {
		t.Errorf("repository holds snapshots %s (%v), want none", r.stdout, err)
	}
	r = bulkctlProc(t, "job", jobID, "--nats", e.url)
	if r.code != exitOK || !strings.Contains(r.stdout, "failed") || !strings.Contains(r.stdout, "stalled") {
		t.Errorf("bulkctl job %s: exit %d, want the job shown failed and stalled:\n%s%s", jobID, r.code, r.stdout, r.stderr)
	}
	stop(t, comp1, comp2, e.coord)
}
