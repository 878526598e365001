package scripts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// The CI test drives the process fleet as a CI pipeline does: through
// NATS subjects only, with plain nats.go calls and JSON written out by
// hand, none of the project's client code (pkg/queue and the like), so that
// what it checks is the wire contract the README documents.

// ciAnswer is the coordinator's answer to a request, as the README
// documents it.
type ciAnswer struct {
	V        int      `json:"v"`
	JobID    string   `json:"job_id"`
	State    string   `json:"state"`
	Existing bool     `json:"existing"`
	Error    string   `json:"error"`
	Errors   []string `json:"errors"`
	Code     int      `json:"code"`
}

// ciEvent is a job event, as the README documents it.
type ciEvent struct {
	V          int    `json:"v"`
	JobID      string `json:"job_id"`
	Kind       string `json:"kind"`
	State      string `json:"state"`
	SnapshotID string `json:"snapshot_id"`
	Error      string `json:"error"`
	Progress   struct {
		BytesDone  int64   `json:"bytes_done"`
		BytesTotal int64   `json:"bytes_total"`
		ETASeconds float64 `json:"eta_s"`
	} `json:"progress"`
	Stats struct {
		SourceBytes int64 `json:"source_bytes"`
		Chunks      int   `json:"chunks"`
	} `json:"stats"`
}

func ciFinal(state string) bool {
	return state == "succeeded" || state == "failed" || state == "cancelled"
}

// ciRequest sends body on subject and returns the decoded answer and the
// micro error code header ("" for none).
func ciRequest(t *testing.T, nc *nats.Conn, subject, body string, timeout time.Duration) (ciAnswer, string) {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), timeout)
	if err != nil {
		t.Fatalf("nats request %s %s: %v", subject, body, err)
	}
	var ans ciAnswer
	if err := json.Unmarshal(msg.Data, &ans); err != nil {
		t.Fatalf("answer on %s: %v: %s", subject, err, msg.Data)
	}
	code := msg.Header.Get("Nats-Service-Error-Code")
	if code != "" && msg.Header.Get("Nats-Service-Error") != ans.Error {
		t.Errorf("%s: Nats-Service-Error %q, body error %q", subject, msg.Header.Get("Nats-Service-Error"), ans.Error)
	}
	return ans, code
}

// ciFollow subscribes to a job's events (before the job is submitted) and
// returns the function that waits for its final event, returning every
// event seen.
func ciFollow(t *testing.T, nc *nats.Conn, jobID string) func() []ciEvent {
	t.Helper()
	sub, err := nc.SubscribeSync("bulk.event.job." + jobID)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() []ciEvent {
		t.Helper()
		defer sub.Unsubscribe()
		var events []ciEvent
		for {
			msg, err := sub.NextMsg(90 * time.Second)
			if err != nil {
				t.Fatalf("events of job %s: %v (seen %+v)", jobID, err, events)
			}
			var ev ciEvent
			if err := json.Unmarshal(msg.Data, &ev); err != nil {
				t.Fatalf("event %s: %v", msg.Data, err)
			}
			events = append(events, ev)
			if ciFinal(ev.State) {
				return events
			}
		}
	}
}

// ciLastEvent reads a job's last event from the BULK_EVENTS stream, as a
// pipeline that subscribes late does (the JetStream API's "get the last
// message of a subject").
func ciLastEvent(t *testing.T, nc *nats.Conn, jobID string) ciEvent {
	t.Helper()
	msg, err := nc.Request("$JS.API.STREAM.MSG.GET.BULK_EVENTS", []byte(`{"last_by_subj":"bulk.event.job.`+jobID+`"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Message struct {
			Subject string `json:"subject"`
			Data    []byte `json:"data"` // base64 in the JSON
		} `json:"message"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Error != nil {
		t.Fatalf("last event of %s: %v %s", jobID, err, msg.Data)
	}
	var ev ciEvent
	if err := json.Unmarshal(reply.Message.Data, &ev); err != nil {
		t.Fatalf("last event of %s: %v: %s", jobID, err, reply.Message.Data)
	}
	return ev
}

// scrape returns the body of a service's /metrics (or other path).
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body)
}

// httpOK reports whether GET url answers 200.
func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// metricValue returns the value of the sample line that starts with
// series in a Prometheus text exposition, or -1.
func metricValue(body, series string) float64 {
	for line := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// fleetMetricsAddr returns where the fleet-up.sh service name (coordinator,
// reader, compressor-N) serves its metrics, from the fleet's port base.
func (f *fleet) metricsAddr(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FLEET_PORT_BASE='(\d+)'$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no FLEET_PORT_BASE in the fleet's env file")
	}
	base, _ := strconv.Atoi(string(m[1]))
	switch {
	case name == "coordinator":
		return fmt.Sprintf("127.0.0.1:%d", base+11)
	case name == "reader":
		return fmt.Sprintf("127.0.0.1:%d", base+12)
	case strings.HasPrefix(name, "compressor-"):
		n, _ := strconv.Atoi(strings.TrimPrefix(name, "compressor-"))
		return fmt.Sprintf("127.0.0.1:%d", base+12+n)
	}
	t.Fatalf("no metrics address for %s", name)
	return ""
}

// TestCIOverNATS is a CI pipeline against the process fleet: it discovers
// the API, submits a backup by request/reply, follows its events, reads
// the last one from the stream, restores it, cancels a job, and meets every
// error a pipeline can make, all through NATS subjects; then it reads the
// fleet's metrics.
func TestCIOverNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet of processes")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	f := startFleet(ctx, t, 2)
	nc, err := nats.Connect(f.env["BULK_NATS"], nats.UserInfo(f.env["BULK_NATS_USER"], f.env["BULK_NATS_PASSWORD"]))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	run := strings.ToLower(rand.Text()[:8])
	repo := "s3://ci-" + run + "/main"
	// The repository is made beforehand, as an operator makes it (a backup
	// does not create one), in plaintext (not with the fleet's password);
	// the pipeline itself only talks NATS.
	f.bulkctlOK(ctx, t, []string{"BULK_PASSWORD_FILE"}, "init", "-r", repo, "--plaintext")

	// Discovery: the micro service, its version, its endpoints described.
	msg, err := nc.Request("$SRV.INFO.bulkbackup", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Version   string            `json:"version"`
		Metadata  map[string]string `json:"metadata"`
		Endpoints []struct {
			Name     string            `json:"name"`
			Subject  string            `json:"subject"`
			Metadata map[string]string `json:"metadata"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if want := testenv.BinariesVersion(t); want != "" && info.Metadata["version"] != want {
		t.Errorf("service metadata version %q, want the stamped %q", info.Metadata["version"], want)
	}
	if info.Version == "1.0.0" || info.Version == "" {
		t.Errorf("service version %q: not the build's", info.Version)
	}
	endpoints := map[string]bool{}
	for _, ep := range info.Endpoints {
		endpoints[ep.Subject] = true
		if ep.Metadata["description"] == "" || ep.Metadata["request_schema"] == "" {
			t.Errorf("endpoint %s has no description or schema: %v", ep.Subject, ep.Metadata)
		}
	}
	for _, s := range []string{"bulk.api.backup", "bulk.api.restore", "bulk.api.cancel", "bulk.api.job", "bulk.api.schedule.add", "bulk.api.schedule.set"} {
		if !endpoints[s] {
			t.Errorf("nats micro info bulkbackup does not list %s", s)
		}
	}

	// Submit a backup by request/reply and follow its events.
	src := filepath.Join(f.tmp, "volume.img")
	const size = 24 << 20
	if err := volgen.WriteFile(ctx, src, size, volgen.Options{Seed: 11}); err != nil {
		t.Fatal(err)
	}
	backupID := "ci-" + run + "-backup"
	backup := fmt.Sprintf(`{"v":1,"job_id":%q,"source":{"host":"local","path":%q},"repo":%q,"chunk_size":1048576}`, backupID, src, repo)
	wait := ciFollow(t, nc, backupID)
	ans, code := ciRequest(t, nc, "bulk.api.backup", backup, 10*time.Second)
	if code != "" || ans.JobID != backupID || ans.State != "queued" {
		t.Fatalf("backup answer %+v (code %q), want job %s queued", ans, code, backupID)
	}
	events := wait()
	last := events[len(events)-1]
	if last.State != "succeeded" || last.SnapshotID == "" || last.Stats.SourceBytes != size {
		t.Fatalf("backup ended %+v", last)
	}
	states := map[string]bool{}
	for _, ev := range events {
		states[ev.State] = true
		if ev.State == "committing" && ev.Stats.Chunks == 0 {
			t.Errorf("the committing event has no stats: %+v", ev)
		}
	}
	if !states["running"] {
		t.Errorf("no running event among %d", len(events))
	}
	// A pipeline that subscribes after the end reads the last event from
	// the stream.
	// (A subscriber may see an event a moment before the stream has
	// stored it on its replicas.)
	lastStored := ciLastEvent(t, nc, backupID)
	for deadline := time.Now().Add(5 * time.Second); lastStored.State != "succeeded" && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		lastStored = ciLastEvent(t, nc, backupID)
	}
	if lastStored.State != "succeeded" || lastStored.SnapshotID != last.SnapshotID {
		t.Errorf("last event in BULK_EVENTS: %+v", lastStored)
	}

	// The same request again (a retried pipeline step): the same job.
	ans, code = ciRequest(t, nc, "bulk.api.backup", backup, 10*time.Second)
	if code != "" || ans.JobID != backupID || !ans.Existing || ans.State != "succeeded" {
		t.Errorf("repeated backup answer %+v (code %q), want the existing job", ans, code)
	}
	// Another request under the same job ID: a conflict.
	other := fmt.Sprintf(`{"v":1,"job_id":%q,"source":{"host":"local","path":%q},"repo":%q}`, backupID, src, repo+"-other")
	ans, code = ciRequest(t, nc, "bulk.api.backup", other, 10*time.Second)
	if code != "409" || ans.Code != 409 || ans.JobID != backupID || !strings.Contains(ans.Error, "repo") {
		t.Errorf("conflicting backup answer %+v (code %q), want 409 naming repo", ans, code)
	}

	// A request with several mistakes: every one named, with the job ID,
	// which then holds the refusal.
	badID := "ci-" + run + "-bad"
	ans, code = ciRequest(t, nc, "bulk.api.backup",
		fmt.Sprintf(`{"v":1,"job_id":%q,"source":{"host":"db.1","path":"dev/sdb"},"level":"max","chunk_size":"4MiB","compression":"zstd"}`, badID),
		10*time.Second)
	if code != "400" || ans.JobID != badID || len(ans.Errors) != 6 {
		t.Errorf("bad backup answer %+v (code %q), want 400 with job %s and 6 problems", ans, code, badID)
	}
	msg, err = nc.Request("bulk.api.job", []byte(`{"v":1,"job_id":"`+badID+`"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		State string `json:"state"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &rec); err != nil || rec.State != "failed" || rec.Error != ans.Error {
		t.Errorf("job %s: %s, want failed with the answer's error", badID, msg.Data)
	}
	// Not JSON: an error answer, not silence.
	ans, code = ciRequest(t, nc, "bulk.api.restore", `{"v":1,"repo":`, 10*time.Second)
	if code != "400" || !strings.Contains(ans.Error, "JSON") {
		t.Errorf("malformed restore answer %+v (code %q)", ans, code)
	}

	// The stream-backed subject: a request/reply there is answered by
	// JetStream (the request is stored); the coordinator answers reply_to.
	inbox := nc.NewRespInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Unsubscribe()
	streamID := "ci-" + run + "-stream"
	msg, err = nc.Request("bulk.request.backup", []byte(fmt.Sprintf(
		`{"v":1,"job_id":%q,"source":{"host":"local","path":%q},"repo":%q,"reply_to":%q}`, streamID, src, repo, inbox)), 10*time.Second)
	if err != nil || !bytes.Contains(msg.Data, []byte(`"stream":"BULK_REQUESTS"`)) {
		t.Fatalf("publish on bulk.request.backup: %v %s", err, msgData(msg))
	}
	msg, err = replies.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no answer on reply_to: %v", err)
	}
	ans = ciAnswer{}
	if err := json.Unmarshal(msg.Data, &ans); err != nil || ans.JobID != streamID || ans.Error != "" {
		t.Errorf("answer on reply_to: %s", msg.Data)
	}
	// Malformed there too: answered on reply_to when it can be read.
	if _, err := nc.Request("bulk.request.restore", []byte(`{"v":1,"reply_to":"`+inbox+`","targets":"local:/x"}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if msg, err = replies.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no answer to a malformed request on reply_to: %v", err)
	}
	ans = ciAnswer{}
	if err := json.Unmarshal(msg.Data, &ans); err != nil || ans.Code != 400 || !strings.Contains(ans.Error, "targets: want an array") {
		t.Errorf("answer to a malformed request on reply_to: %s", msg.Data)
	}

	// Restore the backup by request/reply.
	restoreID := "ci-" + run + "-restore"
	dst := filepath.Join(f.tmp, "restored.img")
	wait = ciFollow(t, nc, restoreID)
	ans, code = ciRequest(t, nc, "bulk.api.restore", fmt.Sprintf(`{"v":1,"job_id":%q,"repo":%q,"snapshot":%q,"targets":[{"host":"local","path":%q}]}`,
		restoreID, repo, last.SnapshotID, dst), 10*time.Second)
	if code != "" || ans.JobID != restoreID {
		t.Fatalf("restore answer %+v (code %q)", ans, code)
	}
	if events := wait(); events[len(events)-1].State != "succeeded" {
		t.Fatalf("restore ended %+v", events[len(events)-1])
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the restored volume differs from the source")
	}

	// Cancel: a backup of a host no reader serves waits for one, running;
	// the cancel is answered once it has stopped.
	cancelID := "ci-" + run + "-cancel"
	wait = ciFollow(t, nc, cancelID)
	if ans, code := ciRequest(t, nc, "bulk.api.backup", fmt.Sprintf(`{"v":1,"job_id":%q,"source":{"host":"nohost","path":"/dev/sdb"},"repo":%q}`,
		cancelID, repo), 10*time.Second); code != "" {
		t.Fatalf("backup to cancel: %+v", ans)
	}
	ans, code = ciRequest(t, nc, "bulk.api.cancel", `{"v":1,"job_id":"`+cancelID+`"}`, 30*time.Second)
	if code != "" || ans.JobID != cancelID || ans.State != "cancelled" {
		t.Errorf("cancel answer %+v (code %q), want cancelled", ans, code)
	}
	events = wait()
	if last := events[len(events)-1]; last.State != "cancelled" || last.SnapshotID != "" || last.Progress.ETASeconds != 0 {
		t.Errorf("the cancelled job's last event: %+v", last)
	}
	ans, code = ciRequest(t, nc, "bulk.api.cancel", `{"v":1,"job_id":"`+cancelID+`"}`, 10*time.Second)
	if code != "" || ans.State != "cancelled" || !ans.Existing {
		t.Errorf("repeated cancel answer %+v (code %q)", ans, code)
	}
	ans, code = ciRequest(t, nc, "bulk.api.cancel", `{"v":1,"job_id":"`+backupID+`"}`, 10*time.Second)
	if code != "409" || ans.State != "succeeded" {
		t.Errorf("cancel of a finished job: %+v (code %q), want 409", ans, code)
	}
	ans, code = ciRequest(t, nc, "bulk.api.cancel", `{"v":1,"job_id":"ci-`+run+`-nope"}`, 10*time.Second)
	if code != "404" {
		t.Errorf("cancel of an unknown job: %+v (code %q), want 404", ans, code)
	}
	// And through the stream, with reply_to.
	cancel2 := "ci-" + run + "-cancel2"
	if ans, code := ciRequest(t, nc, "bulk.api.backup", fmt.Sprintf(`{"v":1,"job_id":%q,"source":{"host":"nohost","path":"/dev/sdc"},"repo":%q}`,
		cancel2, repo), 10*time.Second); code != "" {
		t.Fatalf("backup to cancel: %+v", ans)
	}
	if _, err := nc.Request("bulk.request.cancel", []byte(`{"v":1,"job_id":"`+cancel2+`","reply_to":"`+inbox+`"}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if msg, err = replies.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no answer to the cancel on reply_to: %v", err)
	}
	ans = ciAnswer{}
	if err := json.Unmarshal(msg.Data, &ans); err != nil || ans.JobID != cancel2 || ans.State != "cancelled" {
		t.Errorf("answer to the cancel on reply_to: %s", msg.Data)
	}

	// The fleet's metrics: every service serves them, with its build and
	// the client's mistakes counted.
	coord := scrape(t, "http://"+f.metricsAddr(t, "coordinator")+"/metrics")
	if v := metricValue(coord, `bulk_requests_total{outcome="invalid",request="backup"}`); v < 1 {
		t.Errorf("bulk_requests_total of invalid backups = %v, want at least 1", v)
	}
	if v := metricValue(coord, `bulk_requests_total{outcome="conflict",request="backup"}`); v != 1 {
		t.Errorf("bulk_requests_total of conflicting backups = %v, want 1", v)
	}
	if v := metricValue(coord, `bulk_jobs_total{kind="backup",state="cancelled"}`); v != 2 {
		t.Errorf("bulk_jobs_total of cancelled backups = %v, want 2", v)
	}
	for _, name := range []string{"coordinator", "reader", "compressor-1", "compressor-2"} {
		addr := f.metricsAddr(t, name)
		body := scrape(t, "http://"+addr+"/metrics")
		if !strings.Contains(body, "bulk_build_info{") {
			t.Errorf("%s (%s) has no bulk_build_info", name, addr)
		}
		if name != "coordinator" && metricValue(body, `bulk_chunks_total{outcome="stored"}`) < 0 {
			t.Errorf("%s has no bulk_chunks_total{outcome=\"stored\"}", name)
		}
		scrape(t, "http://"+addr+"/readyz")
	}
	// Two compressors, and the reader's own (it compresses what it has
	// room for), which heartbeats as one.
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(coord, `bulk_workers_alive{role="compressor"}`) != 3 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond) // the coordinator counts them every 5 s
		coord = scrape(t, "http://"+f.metricsAddr(t, "coordinator")+"/metrics")
	}
	if v := metricValue(coord, `bulk_workers_alive{role="compressor"}`); v != 3 {
		t.Errorf("bulk_workers_alive{role=\"compressor\"} = %v, want 3", v)
	}
	if v := metricValue(coord, `bulk_workers_alive{role="reader"}`); v != 1 {
		t.Errorf("bulk_workers_alive{role=\"reader\"} = %v, want 1", v)
	}

	// None of the pipeline's mistakes, nor the cancelled jobs, is an
	// error in the services' logs (log-based alerting would fire); each
	// is a warning that names its job.
	for _, name := range []string{"coordinator", "reader", "compressor-1", "compressor-2"} {
		data, err := os.ReadFile(filepath.Join(f.dir, "logs", name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("%s logged an error: %s", name, line)
			}
		}
		if name == "coordinator" && !regexp.MustCompile(`"level":"WARN","msg":"rejected request",.*"job_id":"`+badID+`"`).Match(data) {
			t.Errorf("the coordinator did not log the rejected request of job %s at warn with its job ID", badID)
		}
	}
}

func msgData(msg *nats.Msg) string {
	if msg == nil {
		return ""
	}
	return string(msg.Data)
}
