package fleet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

func TestQuickBackupRestore(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "vol.img")
	data := make([]byte, 10<<20+123)
	rand.Read(data[:3<<20])
	copy(data[5<<20:], bytes.Repeat([]byte("hello world "), 100000))
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	f, err := fleet.Start(ctx, fleet.Config{Dir: filepath.Join(dir, "nats"), Repos: repos, Compressors: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nc, err := f.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	repo := filepath.Join(dir, "repo")
	jobID := uuid.NewString()
	req := &queue.BackupRequest{V: 1, JobID: jobID, Source: queue.Endpoint{Host: f.Host(), Path: src}, Repo: repo, ChunkSize: 1 << 20}
	if err := queue.Submit(ctx, js, queue.SubjectRequestBackup, req, jobID); err != nil {
		t.Fatal(err)
	}
	ev, err := queue.Follow(ctx, js, jobID, func(e *queue.Event) { t.Logf("event %s %+v %s", e.State, e.Progress, e.Error) })
	if err != nil {
		t.Fatal(err)
	}
	if ev.State != queue.StateSucceeded {
		t.Fatalf("backup %s: %s", ev.State, ev.Error)
	}
	t.Logf("stats %+v", ev.Stats)
	out := filepath.Join(dir, "out.img")
	rjob := uuid.NewString()
	rreq := &queue.RestoreRequest{V: 1, JobID: rjob, Repo: repo, Snapshot: "latest", Targets: []queue.Endpoint{{Host: f.Host(), Path: out}}}
	if err := queue.Submit(ctx, js, queue.SubjectRequestRestore, rreq, rjob); err != nil {
		t.Fatal(err)
	}
	ev, err = queue.Follow(ctx, js, rjob, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev.State != queue.StateSucceeded {
		t.Fatalf("restore %s: %s", ev.State, ev.Error)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("restored %d bytes differ from the %d source bytes", len(got), len(data))
	}
}
