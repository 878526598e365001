package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// TestFaultPruneBesideBackupsCoordinatorKilled runs a prune of a MinIO
// repository while three backups write to it, reusing chunks that only
// forgotten snapshots named (so the prune condemns them), and kills the
// coordinator with SIGKILL once the prune has condemned them. The
// restarted coordinator resumes the prune and the backups: every job
// succeeds, every new snapshot verifies against its source byte for byte,
// and the prune deleted what only the forgotten snapshots named. The
// fleet's processes use the protocol's real timing, so the prune takes a
// minute or more.
func TestFaultPruneBesideBackupsCoordinatorKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries and MinIO")
	}
	startMinIOForAll(t)
	const (
		size  = 16 * mib
		chunk = mib
		head  = 4 * mib // what changes in each source
	)
	dir := t.TempDir()
	e := newFaultFleet(t, dir, faultBucketRepo)
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")

	var srcs []string
	for i := range 3 {
		src := filepath.Join(dir, fmt.Sprintf("vol%d.img", i))
		if err := volgen.WriteFile(t.Context(), src, size, volgen.Options{Seed: int64(60 + i), Mix: volgen.Mix{Random: 1}}); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
		bulkctlProcOK(t, "backup", faultHost+":"+src, "-r", e.repo, "--nats", e.url, "--chunk-size", "1MiB")
	}
	// Each source changes its head, and its snapshot is forgotten: the
	// backups below name chunks no snapshot names.
	for i, src := range srcs {
		fresh := filepath.Join(dir, "head")
		if err := volgen.WriteFile(t.Context(), fresh, head, volgen.Options{Seed: int64(70 + i), Mix: volgen.Mix{Random: 1}}); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(src, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(mustRead(t, fresh), 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var snaps []snapshotEntry
	if err := json.Unmarshal([]byte(bulkctlProcOK(t, "snapshots", "-r", e.repo, "--json").stdout), &snaps); err != nil {
		t.Fatal(err)
	}
	forget := []string{"forget", "-r", e.repo}
	for _, s := range snaps {
		forget = append(forget, s.ID)
	}
	bulkctlProcOK(t, forget...)

	submit := func(subject string, req any, jobID string) {
		t.Helper()
		if err := queue.Submit(t.Context(), e.js, subject, req, jobID); err != nil {
			t.Fatal(err)
		}
	}
	pruneID := newJobID()
	submit(queue.SubjectRequestPrune, &queue.PruneRequest{V: queue.MessageVersion, JobID: pruneID, Repo: e.repo}, pruneID)
	var backups []string
	for _, src := range srcs {
		id := newJobID()
		submit(queue.SubjectRequestBackup, &queue.BackupRequest{V: queue.MessageVersion, JobID: id,
			Source: queue.Endpoint{Host: faultHost, Path: src}, Repo: e.repo, ChunkSize: chunk, Level: "fastest"}, id)
		backups = append(backups, id)
	}
	// Strike once the prune has condemned what no snapshot names.
	e.coord.waitLog(t, "condemned ")
	kill(t, e.coord)
	e.coord = restartCoordinator(t, strings.TrimPrefix(e.url, "nats://"), e.dataDir, e.coordEnv, e.coordArg...)
	e.coord.waitLog(t, "resuming prune")

	for i, id := range backups {
		ev := waitJob(t, e, id, 4*time.Minute)
		if ev.State != queue.StateSucceeded {
			t.Fatalf("backup of %s: %s: %s", srcs[i], ev.State, ev.Error)
		}
		r := bulkctlProcOK(t, "verify", ev.SnapshotID, "-r", e.repo, "--compare", srcs[i])
		if !strings.Contains(r.stdout, "OK") {
			t.Errorf("verify of %s:\n%s", ev.SnapshotID, r.stdout)
		}
	}
	ev := waitJob(t, e, pruneID, 4*time.Minute)
	if ev.State != queue.StateSucceeded {
		t.Fatalf("prune: %s: %s", ev.State, ev.Error)
	}
	p := jobRecord(t, e, pruneID).Pruned
	t.Logf("prune: %d chunks, %d condemned, %d deleted, %d kept", p.Chunks, p.Condemned, p.Deleted, p.Kept)
	if p == nil || p.Phase != repository.PhaseDone || p.Error != "" {
		t.Fatalf("prune ended as %+v, want done", p)
	}
	if p.Deleted < 3*head/chunk {
		t.Errorf("prune deleted %d chunks, want at least the %d of the old heads", p.Deleted, 3*head/chunk)
	}
	// Every snapshot still verifies after the prune, and the repository
	// holds every chunk they name, whole.
	r := bulkctlProcOK(t, "check", "-r", e.repo, "--nats", e.url, "--read-data")
	if !strings.Contains(r.stdout, "3 snapshots checked") || !strings.Contains(r.stdout, "OK") {
		t.Errorf("check after the prune:\n%s", r.stdout)
	}
	stop(t, comp1, comp2, e.reader, e.coord)
}

// waitJob follows job id to its final event, following again when the
// coordinator restarts under it, for at most limit.
func waitJob(t *testing.T, e *faultEnv, id string, limit time.Duration) *queue.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	for {
		ev, err := queue.Follow(ctx, e.js, id, nil)
		if err == nil {
			return ev
		}
		if ctx.Err() != nil {
			t.Fatalf("job %s did not end within %s: %v", id, limit, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// jobRecord reads job id's record from the coordinator's KV bucket.
func jobRecord(t *testing.T, e *faultEnv, id string) *queue.Job {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var job queue.Job
	if err := queue.Decode(entry.Value(), &job); err != nil {
		t.Fatal(err)
	}
	return &job
}
