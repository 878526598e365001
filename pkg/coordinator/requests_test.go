package coordinator_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
)

// request sends body to an API subject and returns the answer, with the
// micro error code ("" for none).
func (b *bundle) request(t *testing.T, subject, body string, timeout time.Duration) (*queue.JobAccepted, string) {
	t.Helper()
	msg, err := b.nc.Request(subject, []byte(body), timeout)
	if err != nil {
		t.Fatalf("request on %s: %v", subject, err)
	}
	var ans queue.JobAccepted
	if err := json.Unmarshal(msg.Data, &ans); err != nil {
		t.Fatalf("answer on %s is not a JobAccepted: %v: %s", subject, err, msg.Data)
	}
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code != "" && msg.Header.Get(micro.ErrorHeader) != ans.Error {
		t.Errorf("error header %q differs from the body's error %q", msg.Header.Get(micro.ErrorHeader), ans.Error)
	}
	return &ans, code
}

// TestSubmitByRequest checks bulk.api.backup and bulk.api.restore: they
// answer with the job ID, a repeat with the same job, a different request
// under a taken job ID with a conflict, and a bad request with every
// problem (and the job ID, under which the refusal is recorded).
func TestSubmitByRequest(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.RoleCoordinator)
	b := setupWith(t, coordinator.Config{ReaderTimeout: readerTimeout, Metrics: m})
	repo := t.TempDir()

	// No job ID: the coordinator makes one.
	ans, code := b.request(t, queue.SubjectAPIBackup,
		`{"v":1,"source":{"host":"nohost","path":"/dev/sdb"},"repo":"`+repo+`"}`, 5*time.Second)
	if code != "" || ans.JobID == "" || ans.State != queue.StateQueued || ans.Existing {
		t.Fatalf("answer = %+v (code %q), want a new queued job", ans, code)
	}
	if ev, _ := b.follow(t, ans.JobID); ev.State != queue.StateFailed || !strings.Contains(ev.Error, "nohost") {
		t.Errorf("job %s ended %s (%s), want failed naming the host without reader", ans.JobID, ev.State, ev.Error)
	}

	// A job ID of the client's: the same request again is the same job.
	req := `{"v":1,"job_id":"ci-1","source":{"host":"nohost","path":"/dev/sdb"},"repo":"` + repo + `","level":"fastest"}`
	if ans, code := b.request(t, queue.SubjectAPIBackup, req, 5*time.Second); code != "" || ans.JobID != "ci-1" || ans.Existing {
		t.Fatalf("first answer = %+v (code %q)", ans, code)
	}
	// Defaults spelled out are the same request.
	same := `{"v":1,"job_id":"ci-1","source":{"host":"nohost","path":"/dev/sdb"},"repo":"` + repo + `","chunk_size":4194304,"mode":"auto"}`
	if ans, code := b.request(t, queue.SubjectAPIBackup, same, 5*time.Second); code != "" || ans.JobID != "ci-1" || !ans.Existing || ans.State == "" {
		t.Errorf("answer to the repeat = %+v (code %q), want the existing job", ans, code)
	}
	// Another request under the same ID: a conflict naming what differs.
	other := `{"v":1,"job_id":"ci-1","source":{"host":"nohost","path":"/dev/sdc"},"repo":"` + repo + `","level":"best"}`
	ans, code = b.request(t, queue.SubjectAPIBackup, other, 5*time.Second)
	if code != "409" || ans.Code != 409 || ans.JobID != "ci-1" || len(ans.Errors) != 2 ||
		!strings.Contains(ans.Error, "/dev/sdc") || !strings.Contains(ans.Error, "level") {
		t.Errorf("answer to a different request under a taken ID = %+v (code %q), want 409 naming source and level", ans, code)
	}
	// A restore under a backup's ID conflicts too.
	ans, code = b.request(t, queue.SubjectAPIRestore,
		`{"v":1,"job_id":"ci-1","repo":"/r","snapshot":"latest","targets":[{"host":"h1","path":"/t"}]}`, 5*time.Second)
	if code != "409" || !strings.Contains(ans.Error, "is a backup") {
		t.Errorf("restore under a backup's job ID = %+v (code %q), want 409", ans, code)
	}

	// Every problem at once, with the job ID, recorded under it.
	bad := `{"v":1,"job_id":"ci-bad","source":{"host":"db 1","path":"dev/sdb"},"chunk_size":1000,"level":"ultra","mode":"fast","colour":"red"}`
	ans, code = b.request(t, queue.SubjectAPIBackup, bad, 5*time.Second)
	wantProblems := []string{`unknown field "colour"`, "no repository", `host "db 1"`, `"dev/sdb"`, "chunk size 1000", `"ultra"`, `mode "fast"`}
	if code != "400" || ans.Code != 400 || ans.JobID != "ci-bad" || len(ans.Errors) != len(wantProblems) {
		t.Fatalf("answer to a bad request = %+v (code %q), want 400 with job ci-bad and %d problems", ans, code, len(wantProblems))
	}
	for _, p := range wantProblems {
		if !strings.Contains(ans.Error, p) {
			t.Errorf("answer error %q does not mention %q", ans.Error, p)
		}
	}
	if ev, _ := b.follow(t, "ci-bad"); ev.State != queue.StateFailed || ev.Error != ans.Error {
		t.Errorf("job ci-bad ended %s (%q), want failed with the answer's error", ev.State, ev.Error)
	}
	// The same bad request again: the same answer, the record unchanged.
	if again, code := b.request(t, queue.SubjectAPIBackup, bad, 5*time.Second); code != "400" || again.Error != ans.Error || again.JobID != "ci-bad" {
		t.Errorf("the bad request again = %+v (code %q)", again, code)
	}

	// Several problems of a field's type: each named, others still checked.
	ans, code = b.request(t, queue.SubjectAPIRestore, `{"v":"1","job_id":7,"repo":"/r","targets":{"host":"h"},"overwrite":"yes"}`, 5*time.Second)
	for _, p := range []string{"v: want an integer", "job_id: want a string", "targets: want an array", "overwrite: want true or false", "no snapshot"} {
		if code != "400" || !strings.Contains(ans.Error, p) {
			t.Errorf("answer %q (code %q) does not mention %q", ans.Error, code, p)
		}
	}
	if ans.JobID != "" {
		t.Errorf("answer names job %q, which the request did not give", ans.JobID)
	}

	// Not JSON at all: still an answer.
	for _, body := range []string{`{not json`, ``, `[1,2]`, `{"v":1}}`} {
		ans, code := b.request(t, queue.SubjectAPIBackup, body, 5*time.Second)
		if code != "400" || !strings.Contains(ans.Error, "not a JSON object") {
			t.Errorf("answer to %q = %+v (code %q), want 400, not a JSON object", body, ans, code)
		}
	}

	// Each outcome counted.
	counts := requestCounts(t, m)
	for k, want := range map[string]float64{
		"backup/accepted": 2, "backup/repeated": 1, "backup/conflict": 1, "backup/invalid": 6, "restore/conflict": 1, "restore/invalid": 1,
	} {
		if counts[k] != want {
			t.Errorf("bulk_requests_total %s = %v, want %v", k, counts[k], want)
		}
	}
}

// requestCounts returns bulk_requests_total by "request/outcome".
func requestCounts(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "bulk_requests_total" {
			continue
		}
		for _, mm := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			counts[labels["request"]+"/"+labels["outcome"]] = mm.GetCounter().GetValue()
		}
	}
	return counts
}

// TestStreamRequestConflict checks the stream-backed path: a different
// request under a taken job ID reaches the coordinator (Submit's
// deduplication ID covers the request, not only its job ID) and is
// answered on reply_to as a conflict; a repeat of the same is deduplicated
// by the stream or answered as the existing job.
func TestStreamRequestConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	repo := t.TempDir()
	replyTo, answer := b.inbox(t)
	req := &queue.BackupRequest{V: 1, JobID: "ci-2", Source: queue.Endpoint{Host: "nohost", Path: "/dev/sdb"}, Repo: repo, ReplyTo: replyTo}
	if err := queue.Submit(t.Context(), b.js, queue.SubjectRequestBackup, req, req.JobID); err != nil {
		t.Fatal(err)
	}
	if ans := answer(); ans.JobID != "ci-2" || ans.Error != "" || ans.State != queue.StateQueued {
		t.Fatalf("answer = %+v, want job ci-2 queued", ans)
	}
	other := *req
	other.Repo = filepath.Join(repo, "other")
	if err := queue.Submit(t.Context(), b.js, queue.SubjectRequestBackup, &other, other.JobID); err != nil {
		t.Fatal(err)
	}
	if ans := answer(); ans.JobID != "ci-2" || ans.Code != queue.ErrorCodeConflict || !strings.Contains(ans.Error, "repo") {
		t.Errorf("answer to another request under ci-2 = %+v, want a conflict naming repo", ans)
	}
	// Malformed JSON that still names its reply subject is answered.
	b.publish(t, queue.SubjectRequestBackup, []byte(`{"v":1,"reply_to":"`+replyTo+`","source":"db1:/dev/sdb"}`))
	if ans := answer(); ans.Code != queue.ErrorCodeInvalid || !strings.Contains(ans.Error, "source: want an object") ||
		!strings.Contains(ans.Error, "no repository") {
		t.Errorf("answer to a malformed request = %+v", ans)
	}
	b.waitRequestsTaken(t)
	if ids := b.jobIDs(t); !slices.Equal(ids, []string{"ci-2"}) {
		t.Errorf("jobs = %q, want only ci-2", ids)
	}
}

// TestCancelByRequest checks bulk.api.cancel and bulk.request.cancel's
// reply_to: a running job is answered once cancelled, a repeat as
// cancelled, an ended job as a conflict, an unknown one as 404.
func TestCancelByRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startReader(t) // and no compressor: the backup cannot finish
	src := writeVolume(t, 16<<20, 3)
	repo := filepath.Join(t.TempDir(), "repo")
	start := func(id string) {
		t.Helper()
		ans, code := b.request(t, queue.SubjectAPIBackup, string(queue.Encode(&queue.BackupRequest{
			V: 1, JobID: id, Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: repo, ChunkSize: 64 << 10,
		})), 5*time.Second)
		if code != "" {
			t.Fatalf("backup %s: %+v", id, ans)
		}
		waitFor(t, "job "+id+" running", func() bool {
			msg, err := b.nc.Request(queue.SubjectAPIJob, []byte(`{"v":1,"job_id":"`+id+`"}`), 5*time.Second)
			var job queue.Job
			return err == nil && json.Unmarshal(msg.Data, &job) == nil && job.Progress.ChunksTotal > 0
		})
	}

	start("to-cancel-1")
	ans, code := b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"to-cancel-1"}`, 30*time.Second)
	if code != "" || ans.JobID != "to-cancel-1" || ans.State != queue.StateCancelled {
		t.Fatalf("cancel answer = %+v (code %q), want cancelled", ans, code)
	}
	ans, code = b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"to-cancel-1"}`, 5*time.Second)
	if code != "" || ans.State != queue.StateCancelled || !ans.Existing {
		t.Errorf("second cancel answer = %+v (code %q), want cancelled, existing", ans, code)
	}
	ans, code = b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"no-such-job"}`, 5*time.Second)
	if code != "404" || ans.JobID != "no-such-job" {
		t.Errorf("cancel of an unknown job = %+v (code %q), want 404", ans, code)
	}
	ans, code = b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"a.b","extra":true}`, 5*time.Second)
	if code != "400" || len(ans.Errors) != 2 {
		t.Errorf("cancel with a bad job ID and an unknown field = %+v (code %q), want 400 with both problems", ans, code)
	}
	// An ended job that was not cancelled: a conflict.
	ans, code = b.request(t, queue.SubjectAPIBackup, `{"v":1,"job_id":"ended","source":{"host":"nohost","path":"/x"},"repo":"/r"}`, 5*time.Second)
	if code != "" {
		t.Fatalf("backup: %+v", ans)
	}
	b.follow(t, "ended")
	ans, code = b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"ended"}`, 5*time.Second)
	if code != "409" || ans.State != queue.StateFailed || !strings.Contains(ans.Error, "already ended") {
		t.Errorf("cancel of a failed job = %+v (code %q), want 409", ans, code)
	}

	// Through the stream, answered on reply_to once cancelled.
	start("to-cancel-2")
	replyTo, answer := b.inbox(t)
	b.publish(t, queue.SubjectRequestCancel, []byte(`{"v":1,"job_id":"to-cancel-2","reply_to":"`+replyTo+`"}`))
	if ans := answer(); ans.JobID != "to-cancel-2" || ans.State != queue.StateCancelled || ans.Error != "" {
		t.Errorf("stream cancel answer = %+v, want cancelled", ans)
	}
}

// TestReadyAfterSetUp checks that the coordinator reports ready only once
// it serves.
func TestReadyAfterSetUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, err := coordinator.New(b.connect(t, "second"), coordinator.Config{Repos: b.repos})
	if err != nil {
		t.Fatal(err)
	}
	if c.Ready() == nil {
		t.Error("a coordinator that has not run reports ready")
	}
	run(t, "second coordinator", c.Run)
	waitFor(t, "the second coordinator to be ready", func() bool { return c.Ready() == nil })
}

// TestServiceInfo checks what `nats micro info bulkbackup` shows: the
// build's version, and every endpoint with a description, schemas and
// error codes.
func TestServiceInfo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	msg, err := b.nc.Request("$SRV.INFO."+coordinator.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Version != coordinator.ServiceVersion() || info.Metadata["version"] == "" {
		t.Errorf("service version %q (metadata %q), want %q", info.Version, info.Metadata["version"], coordinator.ServiceVersion())
	}
	want := []string{queue.SubjectAPIBackup, queue.SubjectAPIRestore, queue.SubjectAPICancel, queue.SubjectAPIJobs, queue.SubjectAPIJob,
		queue.SubjectAPIHistory, queue.SubjectAPIWorkers, queue.SubjectAPIScheduleAdd, queue.SubjectAPIScheduleSet,
		queue.SubjectAPIScheduleList, queue.SubjectAPIScheduleGet, queue.SubjectAPISchedulePause, queue.SubjectAPIScheduleResume,
		queue.SubjectAPIScheduleRm}
	var got []string
	for _, ep := range info.Endpoints {
		got = append(got, ep.Subject)
		for _, k := range []string{"description", "request_schema", "response_schema", "errors"} {
			if ep.Metadata[k] == "" {
				t.Errorf("endpoint %s has no %s", ep.Subject, k)
			}
		}
		for _, k := range []string{"request_schema", "response_schema"} {
			var schema struct {
				Type       string         `json:"type"`
				Properties map[string]any `json:"properties"`
			}
			if err := json.Unmarshal([]byte(ep.Metadata[k]), &schema); err != nil || schema.Type != "object" || schema.Properties["v"] == nil {
				t.Errorf("endpoint %s: %s is not the schema of a message: %v %s", ep.Subject, k, err, ep.Metadata[k])
			}
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	// The README's table for CI systems lists every one of them.
	readme, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## NATS subjects (for CI systems)")
	section, _, _ = strings.Cut(section, "\n## ")
	for _, s := range append(got, queue.SubjectRequestBackup, queue.SubjectRequestRestore, queue.SubjectRequestCancel, queue.EventSubject("<job_id>")) {
		if !strings.Contains(section, "`"+s+"`") {
			t.Errorf("README.md's NATS subjects section does not list `%s`", s)
		}
	}
}

// TestCancelledJobLogsNoError cancels a backup while a compressor holds its
// chunks: what is dropped because the job ended is logged at info, with
// the job ID, never as an error (log-based alerting would fire on every
// cancel).
func TestCancelledJobLogsNoError(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := setupWith(t, coordinator.Config{ReaderTimeout: readerTimeout, Logger: logger})
	r, err := reader.New(b.connect(t, "reader"), reader.Config{Host: readerHost, Repos: b.repos, Workers: 2, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "reader", r.Run)
	c, err := compressor.New(b.connect(t, "compressor"), compressor.Config{
		Name: "slow", Repos: b.repos, Workers: 2, Logger: logger, RateLimit: 1 << 20, // 64 KiB chunks: 16 a second
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "compressor", c.Run)
	src := writeVolume(t, 16<<20, 6)
	const id = "cancel-quietly"
	if ans, code := b.request(t, queue.SubjectAPIBackup, string(queue.Encode(&queue.BackupRequest{
		V: 1, JobID: id, Source: queue.Endpoint{Host: readerHost, Path: src}, Repo: filepath.Join(t.TempDir(), "repo"), ChunkSize: 64 << 10,
	})), 5*time.Second); code != "" {
		t.Fatalf("backup: %+v", ans)
	}
	waitFor(t, "chunks stored", func() bool {
		msg, err := b.nc.Request(queue.SubjectAPIJob, []byte(`{"v":1,"job_id":"`+id+`"}`), 5*time.Second)
		var job queue.Job
		return err == nil && json.Unmarshal(msg.Data, &job) == nil && job.Progress.ChunksDone > 4
	})
	if ans, code := b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"`+id+`"}`, 30*time.Second); code != "" || ans.State != queue.StateCancelled {
		t.Fatalf("cancel: %+v (%s)", ans, code)
	}
	// A descriptor of the job that comes late (a reader announcing a chunk
	// it read as the job was cancelled) is dropped by the compressor, once
	// its cache of the job's state (2 s) has expired.
	time.Sleep(2500 * time.Millisecond)
	late := &queue.ChunkReady{V: queue.WorkVersion, JobID: id, Index: 200, Length: 64 << 10, Host: readerHost,
		Read: queue.ReadChunk{V: queue.WorkVersion, JobID: id, Index: 200, Path: src, Offset: 200 << 16, Length: 64 << 10}}
	b.publish(t, queue.ReadySubject(id), queue.Encode(late))
	waitFor(t, "the compressor to drop the late chunk", func() bool {
		return strings.Contains(logs.String(), `"msg":"dropping a message of an ended job"`)
	})
	time.Sleep(time.Second) // for whatever else the fleet still had of the job to wind down
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("logged an error for a cancelled job: %s", line)
		}
		if strings.Contains(line, "dropping a message of an ended job") &&
			(!strings.Contains(line, `"level":"INFO"`) || !strings.Contains(line, `"job_id":"`+id+`"`)) {
			t.Errorf("a dropped chunk is not logged at info with its job ID: %s", line)
		}
	}
}

// TestHistoryOfRefusedAndCancelled checks what history and the job record
// show of runs that did not succeed: a refused request at the time it was
// made (not at the beginning of time, first), a cancelled run with the
// bytes it got through, and neither with a snapshot or time left.
func TestHistoryOfRefusedAndCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startReader(t)
	c, err := compressor.New(b.connect(t, "compressor"), compressor.Config{Name: "slow", Repos: b.repos, Workers: 1, RateLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "compressor", c.Run)
	src := writeVolume(t, 16<<20, 7)
	source := queue.Endpoint{Host: readerHost, Path: src}
	repo := filepath.Join(t.TempDir(), "repo")
	before := time.Now()

	if ans, code := b.request(t, queue.SubjectAPIBackup, string(queue.Encode(&queue.BackupRequest{
		V: 1, JobID: "refused", Source: source, Repo: repo, ChunkSize: 1000,
	})), 5*time.Second); code != "400" {
		t.Fatalf("refused backup: %+v (%s)", ans, code)
	}
	if ans, code := b.request(t, queue.SubjectAPIBackup, string(queue.Encode(&queue.BackupRequest{
		V: 1, JobID: "cancelled", Source: source, Repo: repo, ChunkSize: 64 << 10,
	})), 5*time.Second); code != "" {
		t.Fatalf("backup: %+v (%s)", ans, code)
	}
	job := func(id string) queue.Job {
		msg, err := b.nc.Request(queue.SubjectAPIJob, []byte(`{"v":1,"job_id":"`+id+`"}`), 5*time.Second)
		var j queue.Job
		if err != nil || json.Unmarshal(msg.Data, &j) != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		return j
	}
	waitFor(t, "chunks stored", func() bool { j := job("cancelled"); return j.Progress.ChunksDone > 2 && j.SnapshotID != "" })
	if ans, code := b.request(t, queue.SubjectAPICancel, `{"v":1,"job_id":"cancelled"}`, 30*time.Second); code != "" || ans.State != queue.StateCancelled {
		t.Fatalf("cancel: %+v (%s)", ans, code)
	}
	if j := job("cancelled"); j.SnapshotID != "" || j.Progress.ETASeconds != 0 || j.Progress.BytesDone == 0 {
		t.Errorf("the cancelled job's record: snapshot %q, progress %+v; want no snapshot, no ETA, the bytes done", j.SnapshotID, j.Progress)
	}

	msg, err := b.nc.Request(queue.SubjectAPIHistory, queue.Encode(&queue.HistoryRequest{V: 1, Source: source}), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var h queue.HistoryReply
	if err := json.Unmarshal(msg.Data, &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Runs) != 2 || h.Runs[0].JobID != "refused" || h.Runs[1].JobID != "cancelled" {
		t.Fatalf("history %+v, want the refused run, then the cancelled one", h.Runs)
	}
	if r := h.Runs[0]; r.Started.Before(before) || r.State != queue.StateFailed || r.Error == "" {
		t.Errorf("refused run %+v: want it listed when it was asked for, failed, with why", r)
	}
	if r := h.Runs[1]; r.State != queue.StateCancelled || r.SourceBytes == 0 || r.SnapshotID != "" || r.MBps != 0 {
		t.Errorf("cancelled run %+v: want the bytes it got through, no snapshot", r)
	}
}
