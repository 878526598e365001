package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

const (
	readerTimeout = time.Second
	testDeadline  = 60 * time.Second // bound on any single wait
	readerHost    = "h1"
)

// bundle is an embedded broker with a coordinator running on it and a plain
// client connection.
type bundle struct {
	broker *broker.Broker
	repos  *repository.Cache
	nc     *nats.Conn
	js     jetstream.JetStream
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, coordinator.Config{ReaderTimeout: readerTimeout})
}

// setupWith is setup with the coordinator configured by cfg; without
// cfg.Repos, repositories are directories.
func setupWith(t *testing.T, cfg coordinator.Config) *bundle {
	t.Helper()
	b, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	bb := &bundle{broker: b, repos: cfg.Repos}
	if bb.repos == nil {
		bb.repos = repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
			return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
		}, repository.OpenOptions{CreatePlaintext: true})
	}
	cfg.Repos = bb.repos
	c, err := coordinator.New(bb.connect(t, "coordinator"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "coordinator", c.Run)

	bb.nc = bb.connect(t, "client")
	if bb.js, err = jetstream.New(bb.nc); err != nil {
		t.Fatal(err)
	}
	// Wait until the coordinator serves: its durable consumer exists.
	waitFor(t, "the coordinator's consumer", func() bool {
		_, err := bb.js.Consumer(t.Context(), queue.StreamRequests, queue.ConsumerCoordinator)
		return err == nil
	})
	return bb
}

func (b *bundle) connect(t *testing.T, name string) *nats.Conn {
	t.Helper()
	nc, err := b.broker.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// run runs a service until the test ends, then stops it and checks that it
// returned nil.
func run(t *testing.T, name string, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(testDeadline):
			t.Errorf("%s did not stop", name)
		}
	})
}

// startReader runs a reader for readerHost.
func (b *bundle) startReader(t *testing.T) {
	t.Helper()
	r, err := reader.New(b.connect(t, "reader"), reader.Config{Host: readerHost, Repos: b.repos, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "reader", r.Run)
}

// startCompressor runs a compressor.
func (b *bundle) startCompressor(t *testing.T) {
	t.Helper()
	c, err := compressor.New(b.connect(t, "compressor"), compressor.Config{Name: "c1", Repos: b.repos, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "compressor", c.Run)
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling, not synchronisation
	}
}

func (b *bundle) publish(t *testing.T, subject string, data []byte) {
	t.Helper()
	if _, err := b.js.Publish(t.Context(), subject, data); err != nil {
		t.Fatalf("publish on %s: %v", subject, err)
	}
}

// inbox subscribes to a new reply subject and returns it with a function
// that waits for the next answer on it.
func (b *bundle) inbox(t *testing.T) (string, func() *queue.JobAccepted) {
	t.Helper()
	subject := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return subject, func() *queue.JobAccepted {
		t.Helper()
		msg, err := sub.NextMsg(testDeadline)
		if err != nil {
			t.Fatalf("no answer on %s: %v", subject, err)
		}
		var ans queue.JobAccepted
		if err := queue.Decode(msg.Data, &ans); err != nil {
			t.Fatalf("answer %s: %v", msg.Data, err)
		}
		return &ans
	}
}

// follow waits for the final event of jobID and returns it with every event
// before it.
func (b *bundle) follow(t *testing.T, jobID string) (*queue.Event, []queue.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	var all []queue.Event
	ev, err := queue.Follow(ctx, b.js, jobID, func(ev *queue.Event) { all = append(all, *ev) })
	if err != nil {
		t.Fatalf("follow job %s: %v", jobID, err)
	}
	return ev, all
}

// jobIDs lists the job records.
func (b *bundle) jobIDs(t *testing.T) []string {
	t.Helper()
	kv, err := b.js.KeyValue(t.Context(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	lister, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	return ids
}

// eventJobIDs lists the jobs with events.
func (b *bundle) eventJobIDs(t *testing.T) []string {
	t.Helper()
	s, err := b.js.Stream(t.Context(), queue.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for subject := range info.State.Subjects {
		ids = append(ids, strings.TrimPrefix(subject, queue.EventSubject("")))
	}
	slices.Sort(ids)
	return ids
}

// waitRequestsTaken waits until the coordinator has taken every request.
func (b *bundle) waitRequestsTaken(t *testing.T) {
	t.Helper()
	s, err := b.js.Stream(t.Context(), queue.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the coordinator to take every request", func() bool {
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
}

// writeVolume writes size bytes of non-zero, poorly compressible data.
func writeVolume(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vol.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, seed))
	buf := make([]byte, 1<<20)
	for written := int64(0); written < size; {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64() | 0x0101010101010101 // no zero bytes: never an all-zero chunk
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := min(int64(len(buf)), size-written)
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		written += n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMalformedRequestsCreateNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, queue.SubjectRequestBackup, []byte(`{not json`))
	b.publish(t, queue.SubjectRequestRestore, []byte{0, 0xff, 0xfe})
	b.publish(t, queue.SubjectRequestBackup, []byte(`{"v":1,"job_id":"truncated"`))
	b.publish(t, queue.SubjectRequestBackup, []byte(`{"v":1,"chunk_size":"big"}`))
	b.publish(t, queue.SubjectRequestBackup, []byte(`{"v":1,"job_id":"not.a.token","extra":1}`))
	b.publish(t, queue.SubjectRequestCancel, []byte(`[]`))
	b.publish(t, queue.SubjectRequestCancel, queue.Encode(&queue.CancelRequest{V: 1, JobID: "no-such-job"}))
	b.publish(t, "bulk.request.unknown", queue.Encode(&queue.BackupRequest{V: 1, JobID: "unknown-subject"}))
	// Valid JSON that fails validation, without a job ID of the client's:
	// nobody could follow a job recorded under an ID the coordinator made up.
	b.publish(t, queue.SubjectRequestBackup, []byte(`{"v":1}`))
	b.publish(t, queue.SubjectRequestBackup, []byte(`{"v":1,"source":{"host":"h1","path":"relative"},"repo":"/r"}`))
	b.publish(t, queue.SubjectRequestRestore, []byte(`{"v":1,"repo":"/r"}`))

	// The coordinator still serves: a valid request after the junk works.
	replyTo, answer := b.inbox(t)
	b.publish(t, queue.SubjectRequestRestore, queue.Encode(&queue.RestoreRequest{
		V: 1, JobID: "valid", Repo: filepath.Join(t.TempDir(), "no-repo"), Snapshot: "latest",
		Targets: []queue.Endpoint{{Host: readerHost, Path: "/restored"}}, ReplyTo: replyTo,
	}))
	if ans := answer(); ans.JobID != "valid" || ans.Error != "" {
		t.Fatalf("answer to the valid request = %+v", ans)
	}
	ev, _ := b.follow(t, "valid")
	if ev.State != queue.StateFailed || !strings.Contains(ev.Error, "no-repo") {
		t.Errorf("valid job ended %s (%s), want failed naming the missing repository", ev.State, ev.Error)
	}
	b.waitRequestsTaken(t)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{"valid"}) {
		t.Errorf("jobs = %q, want only the valid one", ids)
	}
	if ids := b.eventJobIDs(t); !slices.Equal(ids, []string{"valid"}) {
		t.Errorf("events published for jobs %q, want only the valid one", ids)
	}
}

// TestUndecodableRequestWithJobID checks that a request that does not decode
// but names its job and reply subject is answered with the error, and the
// job is recorded as failed.
func TestUndecodableRequestWithJobID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name    string
		subject string
		json    string // with %REPLY% for the reply subject and %JOB% for the job ID
		errText string
	}{
		{
			name: "backup with an unknown field", subject: queue.SubjectRequestBackup, errText: "compression",
			json: `{"v":1,"job_id":"%JOB%","reply_to":"%REPLY%","source":{"host":"h1","path":"/x"},"repo":"/r","compression":"max"}`,
		},
		{
			name: "restore with an unknown field", subject: queue.SubjectRequestRestore, errText: "target",
			json: `{"v":1,"job_id":"%JOB%","reply_to":"%REPLY%","repo":"/r","snapshot":"latest","target":{"host":"h1","path":"/x"}}`,
		},
		{
			name: "backup with a field of the wrong type", subject: queue.SubjectRequestBackup, errText: "chunk_size",
			json: `{"v":1,"job_id":"%JOB%","reply_to":"%REPLY%","source":{"host":"h1","path":"/x"},"repo":"/r","chunk_size":"4MiB"}`,
		},
		{
			name: "backup of an unknown version", subject: queue.SubjectRequestBackup, errText: "version 2",
			json: `{"v":2,"job_id":"%JOB%","reply_to":"%REPLY%","source":{"host":"h1","path":"/x"},"repo":"/r"}`,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			jobID := "undecodable-" + string(rune('a'+i))
			replyTo, answer := b.inbox(t)
			data := strings.NewReplacer("%REPLY%", replyTo, "%JOB%", jobID).Replace(tt.json)
			b.publish(t, tt.subject, []byte(data))
			ans := answer()
			if ans.Error == "" || !strings.Contains(ans.Error, tt.errText) {
				t.Errorf("answer = %+v, want an error mentioning %q", ans, tt.errText)
			}
			ev, _ := b.follow(t, jobID)
			if ev.State != queue.StateFailed || !strings.Contains(ev.Error, tt.errText) {
				t.Errorf("final event %s (%s), want failed mentioning %q", ev.State, ev.Error, tt.errText)
			}
		})
	}
}

func TestBackupWithoutReaderFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	repo := filepath.Join(t.TempDir(), "repo")
	start := time.Now()
	if err := queue.Submit(t.Context(), b.js, queue.SubjectRequestBackup, &queue.BackupRequest{
		V: 1, JobID: "lonely", Source: queue.Endpoint{Host: "nohost", Path: "/dev/sdb"}, Repo: repo,
	}, "lonely"); err != nil {
		t.Fatal(err)
	}
	ev, all := b.follow(t, "lonely")
	if ev.State != queue.StateFailed {
		t.Fatalf("job ended %s (%s), want failed", ev.State, ev.Error)
	}
	if !strings.Contains(ev.Error, `"nohost"`) {
		t.Errorf("error %q does not name the host", ev.Error)
	}
	if elapsed := time.Since(start); elapsed < readerTimeout {
		t.Errorf("job failed after %s, before ReaderTimeout %s", elapsed, readerTimeout)
	}
	if !slices.ContainsFunc(all, func(ev queue.Event) bool { return strings.Contains(ev.Message, "waiting for a reader on host nohost") }) {
		t.Errorf("no event said the job was waiting for a reader: %+v", all)
	}
	if _, err := os.Stat(repo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repository created for a job whose source was never reached: %v", err)
	}
}

func TestRejectsBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	repo := t.TempDir()
	backup := func(mod func(*queue.BackupRequest)) *queue.BackupRequest {
		req := &queue.BackupRequest{V: 1, Source: queue.Endpoint{Host: readerHost, Path: "/dev/sdb"}, Repo: repo}
		mod(req)
		return req
	}
	restore := func(mod func(*queue.RestoreRequest)) *queue.RestoreRequest {
		req := &queue.RestoreRequest{V: 1, Repo: repo, Snapshot: "latest", Targets: []queue.Endpoint{{Host: readerHost, Path: "/t"}}}
		mod(req)
		return req
	}
	tests := []struct {
		name    string
		subject string
		req     any // a *BackupRequest or *RestoreRequest; JobID and ReplyTo are set below
		errText string
	}{
		{"restore without targets", queue.SubjectRequestRestore, restore(func(r *queue.RestoreRequest) { r.Targets = nil }), "no restore target"},
		{"restore to a relative path", queue.SubjectRequestRestore, restore(func(r *queue.RestoreRequest) { r.Targets[0].Path = "t" }), `"t"`},
		{"restore to a bad host", queue.SubjectRequestRestore, restore(func(r *queue.RestoreRequest) { r.Targets[0].Host = "h.1" }), `"h.1"`},
		{"restore to one target twice", queue.SubjectRequestRestore, restore(func(r *queue.RestoreRequest) { r.Targets = append(r.Targets, r.Targets[0]) }), "twice"},
		{"restore without snapshot", queue.SubjectRequestRestore, restore(func(r *queue.RestoreRequest) { r.Snapshot = "" }), "no snapshot"},
		{"restore without repository", queue.SubjectRequestRestore, restore(func(r *queue.RestoreRequest) { r.Repo = "" }), "no repository"},
		{"backup with a chunk size not a multiple of 4096", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.ChunkSize = 1000 }), "chunk size 1000"},
		{"backup with a negative chunk size", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.ChunkSize = -4096 }), "chunk size -4096"},
		{"backup with a huge chunk size", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.ChunkSize = 1 << 30 }), "chunk size 1073741824"},
		{"backup with a bad level", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.Level = "ultra" }), `"ultra"`},
		{"backup from a host with a space", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.Source.Host = "db 1" }), `host "db 1"`},
		{"backup from a host with a dot", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.Source.Host = "db.example.com" }), `host "db.example.com"`},
		{"backup from a wildcard host", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.Source.Host = "*" }), `host "*"`},
		{"backup of a relative path", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.Source.Path = "dev/sdb" }), "absolute"},
		{"backup without repository", queue.SubjectRequestBackup, backup(func(r *queue.BackupRequest) { r.Repo = "" }), "no repository"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			jobID := "bad-" + strings.Repeat("x", i+1)
			replyTo, answer := b.inbox(t)
			switch req := tt.req.(type) {
			case *queue.BackupRequest:
				req.JobID, req.ReplyTo = jobID, replyTo
			case *queue.RestoreRequest:
				req.JobID, req.ReplyTo = jobID, replyTo
			}
			b.publish(t, tt.subject, queue.Encode(tt.req))
			ans := answer()
			if !strings.Contains(ans.Error, tt.errText) {
				t.Errorf("answer error = %q, want it to mention %q", ans.Error, tt.errText)
			}
			ev, _ := b.follow(t, jobID)
			if ev.State != queue.StateFailed || ev.Error != ans.Error {
				t.Errorf("final event %s (%s), want failed with the answer's error", ev.State, ev.Error)
			}
		})
	}
	t.Run("bad job ID", func(t *testing.T) {
		t.Parallel()
		replyTo, answer := b.inbox(t)
		b.publish(t, queue.SubjectRequestBackup, queue.Encode(backup(func(r *queue.BackupRequest) {
			r.JobID, r.ReplyTo = "a.b", replyTo
		})))
		if ans := answer(); !strings.Contains(ans.Error, `job_id "a.b"`) {
			t.Errorf("answer error = %q, want it to name the bad job_id", ans.Error)
		}
	})
}

func TestDuplicateJobIDIsOneJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const id = "twice"
	replyTo, answer := b.inbox(t)
	req := queue.Encode(&queue.BackupRequest{
		V: 1, JobID: id, Source: queue.Endpoint{Host: "nohost", Path: "/dev/sdb"}, Repo: t.TempDir(), ReplyTo: replyTo,
	})
	// Published without a message ID, so the stream does not deduplicate:
	// the coordinator must.
	b.publish(t, queue.SubjectRequestBackup, req)
	b.publish(t, queue.SubjectRequestBackup, req)
	for i := range 2 {
		if ans := answer(); ans.JobID != id || ans.Error != "" {
			t.Errorf("answer %d = %+v, want job %s accepted", i+1, ans, id)
		}
	}
	b.waitRequestsTaken(t)
	ev, all := b.follow(t, id)
	if ev.State != queue.StateFailed { // no reader serves nohost
		t.Errorf("job ended %s, want failed", ev.State)
	}
	count := func(state string) int {
		return len(slices.DeleteFunc(slices.Clone(all), func(ev queue.Event) bool { return ev.State != state }))
	}
	if q, f := count(queue.StateQueued), count(queue.StateFailed); q != 1 || f != 1 {
		t.Errorf("events: %d queued, %d failed; want one job: 1 and 1", q, f)
	}
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{id}) {
		t.Errorf("jobs = %q, want [%s]", ids, id)
	}
	// A submission after the job ended is still the same job, left alone.
	kv, err := b.js.KeyValue(t.Context(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	b.publish(t, queue.SubjectRequestBackup, req)
	if ans := answer(); ans.JobID != id || ans.Error != "" {
		t.Errorf("answer after the job ended = %+v, want job %s accepted", ans, id)
	}
	b.waitRequestsTaken(t)
	after, err := kv.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() != before.Revision() {
		t.Errorf("the ended job's record was rewritten: %s", after.Value())
	}
	if n := b.eventCount(t, id); n != len(all) {
		t.Errorf("%d events for the job after a repeated submission, want still %d", n, len(all))
	}
}

// eventCount returns how many events job jobID has.
func (b *bundle) eventCount(t *testing.T, jobID string) int {
	t.Helper()
	s, err := b.js.Stream(t.Context(), queue.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(queue.EventSubject(jobID)))
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Subjects[queue.EventSubject(jobID)])
}

// TestGarbageThenBackup floods the request subjects with random bytes, then
// runs a real backup: the coordinator keeps serving and the job succeeds.
func TestGarbageThenBackup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startReader(t)
	b.startCompressor(t)

	rng := rand.New(rand.NewPCG(20240601, 1))
	subjects := []string{queue.SubjectRequestBackup, queue.SubjectRequestRestore}
	prefixes := [][]byte{nil, []byte(`{"v":1,`), []byte(`{"v":1,"job_id":"`)}
	for i := range 2000 {
		data := slices.Clone(prefixes[i%len(prefixes)])
		for range rng.IntN(300) {
			data = append(data, byte(rng.Uint32()))
		}
		if _, err := b.js.PublishAsync(subjects[rng.IntN(len(subjects))], data); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(testDeadline):
		t.Fatal("random requests not all published")
	}
	requests, err := b.js.Stream(t.Context(), queue.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := requests.Info(t.Context()); err != nil || info.State.LastSeq < 2000 {
		t.Fatalf("requests stream after publishing 2000: %+v, %v", info.State, err)
	}

	const size = 1<<20 + 12345
	src := writeVolume(t, size, 1)
	repo := filepath.Join(t.TempDir(), "repo")
	const id = "real-backup"
	if err := queue.Submit(t.Context(), b.js, queue.SubjectRequestBackup, &queue.BackupRequest{
		V: 1, JobID: id, Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo, ChunkSize: 64 << 10,
	}, id); err != nil {
		t.Fatal(err)
	}
	ev, _ := b.follow(t, id)
	if ev.State != queue.StateSucceeded {
		t.Fatalf("backup ended %s (%s), want succeeded", ev.State, ev.Error)
	}
	r, err := b.repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.LoadSnapshot(t.Context(), ev.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Size != size || len(snap.Chunks) != 17 {
		t.Errorf("snapshot: %d bytes in %d chunks, want %d in 17", snap.Size, len(snap.Chunks), size)
	}
	b.waitRequestsTaken(t)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{id}) {
		t.Errorf("jobs = %q, want only %s", ids, id)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startReader(t) // and no compressor: the backup cannot finish
	src := writeVolume(t, 64<<20, 2)
	repo := filepath.Join(t.TempDir(), "repo")
	const id = "to-cancel"
	if err := queue.Submit(t.Context(), b.js, queue.SubjectRequestBackup, &queue.BackupRequest{
		V: 1, JobID: id, Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo, ChunkSize: 64 << 10,
	}, id); err != nil {
		t.Fatal(err)
	}
	// Wait until chunks are being read, then cancel.
	planned := make(chan struct{})
	type result struct {
		ev  *queue.Event
		err error
	}
	final := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		once := false
		ev, err := queue.Follow(ctx, b.js, id, func(ev *queue.Event) {
			if !once && ev.Progress.ChunksTotal > 0 {
				once = true
				close(planned)
			}
		})
		final <- result{ev, err}
	}()
	select {
	case <-planned:
	case r := <-final:
		t.Fatalf("job ended before it was cancelled: %+v, %v", r.ev, r.err)
	case <-time.After(testDeadline):
		t.Fatal("the job never planned its chunks")
	}
	ready, err := b.js.Stream(t.Context(), queue.StreamReady)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "chunks announced by the reader", func() bool {
		info, err := ready.Info(t.Context())
		return err == nil && info.State.Msgs > 0
	})
	b.publish(t, queue.SubjectRequestCancel, queue.Encode(&queue.CancelRequest{V: 1, JobID: id}))

	var r result
	select {
	case r = <-final:
	case <-time.After(testDeadline):
		t.Fatal("no final event after the cancel request")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.ev.State != queue.StateCancelled {
		t.Errorf("final state = %s (%s), want %s", r.ev.State, r.ev.Error, queue.StateCancelled)
	}
	if r.ev.Progress.ChunksDone >= r.ev.Progress.ChunksTotal {
		t.Errorf("progress %d of %d chunks: the job was not cut short", r.ev.Progress.ChunksDone, r.ev.Progress.ChunksTotal)
	}
	// Its outstanding work is withdrawn and no snapshot is committed.
	work, err := b.js.Stream(t.Context(), queue.StreamWork)
	if err != nil {
		t.Fatal(err)
	}
	info, err := work.Info(t.Context(), jetstream.WithSubjectFilter(queue.JobWorkFilter(id)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.State.Subjects); n != 0 {
		t.Errorf("%d work subjects of the cancelled job remain: %v", n, info.State.Subjects)
	}
	// And so are the descriptors of the chunks its reader held.
	readyInfo, err := ready.Info(t.Context(), jetstream.WithSubjectFilter(queue.ReadySubject(id)))
	if err != nil {
		t.Fatal(err)
	}
	if n := readyInfo.State.Msgs; n != 0 {
		t.Errorf("%d descriptors of the cancelled job remain", n)
	}
	rp, err := b.repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := rp.SnapshotIDs(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("snapshots after cancel = %v, %v; want none", ids, err)
	}
}

// TestAPI checks the micro service: discoverable as "bulkbackup", and its
// endpoints answer bad requests and unknown jobs with error codes.
func TestAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	msg, err := b.nc.Request("$SRV.INFO.bulkbackup", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("service info: %v", err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	subjects := make(map[string]bool)
	for _, ep := range info.Endpoints {
		subjects[ep.Subject] = true
	}
	for _, want := range []string{queue.SubjectAPIJobs, queue.SubjectAPIJob, queue.SubjectAPIHistory} {
		if !subjects[want] {
			t.Errorf("service info lists %v, missing %s", subjects, want)
		}
	}

	tests := []struct {
		name     string
		subject  string
		body     string
		wantCode string
	}{
		{"jobs on an empty coordinator", queue.SubjectAPIJobs, `{"v":1}`, ""},
		{"malformed", queue.SubjectAPIJobs, `{"v":1,"bogus":true}`, "400"},
		{"unknown job", queue.SubjectAPIJob, `{"v":1,"job_id":"nope"}`, "404"},
		{"bad job id", queue.SubjectAPIJob, `{"v":1,"job_id":"../x"}`, "400"},
		{"history of an unknown source", queue.SubjectAPIHistory, `{"v":1,"source":{"host":"h","path":"/x"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := b.nc.Request(tt.subject, []byte(tt.body), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Header.Get(micro.ErrorCodeHeader); got != tt.wantCode {
				t.Fatalf("error code %q (%s), want %q; body %s", got, msg.Header.Get(micro.ErrorHeader), tt.wantCode, msg.Data)
			}
		})
	}
}
