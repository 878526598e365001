package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestFaultTenBackups submits ten backups of different sources at once to
// a fleet of two compressors. All complete, each snapshot verifies against
// its source, and no job starves:
//
//   - every job is under way (its first work item published) before half of
//     the jobs have finished, so jobs are not admitted one after another;
//   - once a job's first item is published, the other jobs store at most
//     twice their combined window of chunks before that job completes its
//     first one. The coordinator's per-job window (here 4 items, scaled down
//     with the volumes) bounds what the others have queued ahead of it; what
//     they queue later lines up behind it.
//
// Both criteria count messages, not time, so they hold under the race
// detector and on a loaded machine. An earlier criterion, every job storing
// a chunk before the first job finished, mixed in how long a job takes to
// start (stat, repository, parent lookup) against how long a small job
// runs, and failed once under -race for that reason alone.
func TestFaultTenBackups(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	const (
		jobs      = 10
		chunkSize = 256 * kib
		window    = 4
	)
	size := int64(16 * mib) // 64 chunks a job, 160 MiB in all
	e := &faultEnv{dir: t.TempDir()}
	e.dataDir, e.repo = filepath.Join(e.dir, "jetstream"), filepath.Join(e.dir, "repo")
	e.coord, e.url = startCoordinator(t, e.dataDir, "--window", fmt.Sprint(window))
	e.coord.waitLog(t, "coordinator serving")
	e.reader = startFaultReader(t, "reader", e.url)
	e.connect(t)
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")

	// Ten sources, each at least half not zeros: an all-zero one would
	// end at once, having stored nothing.
	vols := make([]string, jobs)
	seed := int64(100)
	for i := range vols {
		for ; ; seed++ {
			vols[i] = writeVolume(t, filepath.Join(e.dir, fmt.Sprintf("vol%d.img", i)), size, seed)
			if nonZeroChunks(t, vols[i], chunkSize) >= int(size/chunkSize)/2 {
				seed++
				break
			}
		}
	}

	// Work items, completions and final events of every job, in the order
	// the server delivers them to this one channel.
	var (
		mu          sync.Mutex
		seq         int
		firstWork   = make(map[string]int) // job -> sequence number of its first work item
		firstDone   = make(map[string]int) // job -> sequence number of its first completion
		firstStored = make(map[string]int) // job -> sequence number of its first stored chunk
		finished    = make(map[string]int) // job -> sequence number of its final event
		stored      []storedAt             // every stored chunk
	)
	first := func(m map[string]int, job string) {
		if _, ok := m[job]; !ok {
			m[job] = seq
		}
	}
	msgs := make(chan *nats.Msg, 1<<14)
	readWork, chunkDone := queue.WorkSubject(queue.OpRead, faultHost, "*"), queue.DoneSubject("*", queue.DoneChunk)
	for _, subj := range []string{readWork, chunkDone, queue.EventSubject("*")} {
		sub, err := e.nc.ChanSubscribe(subj, msgs)
		if err != nil {
			t.Fatal(err)
		}
		sub.SetPendingLimits(-1, -1)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for m := range msgs {
			mu.Lock()
			seq++
			switch {
			case strings.HasPrefix(m.Subject, strings.TrimSuffix(readWork, "*")):
				first(firstWork, strings.TrimPrefix(m.Subject, strings.TrimSuffix(readWork, "*")))
			case strings.HasSuffix(m.Subject, "."+queue.DoneChunk):
				var d queue.ChunkDone
				if queue.Decode(m.Data, &d) == nil {
					first(firstDone, d.JobID)
					if !d.Zero {
						first(firstStored, d.JobID)
						stored = append(stored, storedAt{seq: seq, job: d.JobID})
					}
				}
			default:
				var ev queue.Event
				if queue.Decode(m.Data, &ev) == nil && queue.Final(ev.State) {
					first(finished, ev.JobID)
				}
			}
			mu.Unlock()
		}
	}()

	start := time.Now()
	ids := make([]string, jobs)
	for i, vol := range vols {
		ids[i] = newJobID()
		req := &queue.BackupRequest{
			V: queue.MessageVersion, JobID: ids[i], Source: queue.Endpoint{Host: faultHost, Path: vol},
			Repo: e.repo, ChunkSize: chunkSize, Level: "fastest",
		}
		if err := queue.Submit(t.Context(), e.js, queue.SubjectRequestBackup, req, ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("submitted %d backups of %d MiB each", jobs, size/mib)
	events := make([]*queue.Event, jobs)
	for i, id := range ids {
		events[i] = e.wait(t, id)
	}
	t.Logf("all jobs ended in %s", time.Since(start).Round(time.Millisecond))

	for i, ev := range events {
		if ev.State != queue.StateSucceeded {
			t.Errorf("job %d (%s) ended %s: %s", i, ev.JobID, ev.State, ev.Error)
			continue
		}
		r := ok(t, "verify", ev.SnapshotID, "-r", e.repo, "--compare", vols[i]) // in process: it reads only the repository
		if !strings.Contains(r.stdout, ev.SnapshotID) || !strings.Contains(r.stdout, "OK") {
			t.Errorf("verify of job %d's snapshot:\n%s", i, r.stdout)
		}
	}

	// No job starved.
	mu.Lock()
	finishes := slices.Sorted(maps.Values(finished))
	if len(finishes) != jobs {
		mu.Unlock()
		t.Fatalf("saw the final events of %d jobs, want %d", len(finishes), jobs)
	}
	half := finishes[jobs/2-1]
	bound := 2 * (jobs - 1) * window
	var line []string
	for i, id := range ids {
		work, ok := firstWork[id]
		if !ok || work > half {
			t.Errorf("job %d (%s) published its first work item at message %d, after half the jobs had finished (%d): jobs were admitted one after another", i, id, work, half)
		}
		others := 0
		for _, s := range stored {
			if s.seq > work && s.seq < firstDone[id] && s.job != id {
				others++
			}
		}
		if others > bound {
			t.Errorf("job %d (%s) waited from its first work item (message %d) to its first completion (message %d) while the other jobs stored %d chunks, more than twice their window (%d)", i, id, work, firstDone[id], others, bound)
		}
		line = append(line, fmt.Sprintf("%d:%d/%d/%d(%d)", i, work, firstDone[id], firstStored[id], others))
	}
	t.Logf("per job, at message: first work item/first completion/first stored chunk (chunks the others stored in between); first job finished at message %d, half at %d, the last at %d of %d: %s",
		finishes[0], half, finishes[jobs-1], seq, strings.Join(line, " "))
	mu.Unlock()
	stop(t, comp1, comp2, e.reader, e.coord)
}

// storedAt is a stored chunk of job, at message seq.
type storedAt struct {
	seq int
	job string
}
