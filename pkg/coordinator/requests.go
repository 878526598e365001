package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// Requests.
//
// A client submits a backup or restore, or cancels a job, in one of two
// ways: by publishing into the request stream (bulk.request.*, kept until
// the coordinator takes it, also across its restarts; the answer goes to
// the request's reply_to), or by request/reply on the micro service's
// endpoints (bulk.api.backup, .restore, .cancel; answered at once). Both
// are handled here, the same way, and answered with a queue.JobAccepted:
//
//   - A request that is not valid is refused with every problem found
//     (queue.DecodeAll and the checks below), code 400. Under a job ID of
//     the client's choosing that is not taken, the refusal is also recorded
//     as a failed job, so a client following the job's events reads why.
//   - A job ID is an idempotency key: the same request again is answered
//     with the job (existing: true) and changes nothing; a different request
//     under a taken job ID is refused as a conflict (409), naming what
//     differs.
//   - A cancel is answered once the job has stopped (at most cancelWait
//     later), with its final state; a cancel of a job that already ended
//     otherwise is a conflict, of an unknown job 404.
//
// Client mistakes are logged at warn with the job ID, and counted in
// bulk_requests_total by outcome.

// requestMaxDeliver is how often a message of the request stream is
// delivered at most (the coordinator consumer's MaxDeliver): on the last
// delivery a request that keeps failing is answered with the failure.
const requestMaxDeliver = 5

// cancelWait bounds how long the answer to a cancel waits for the job to
// stop.
const cancelWait = 10 * time.Second

// kindOf returns the job kind a request subject submits, or "".
func kindOf(subject string) string {
	switch subject {
	case queue.SubjectRequestBackup, queue.SubjectAPIBackup:
		return queue.KindBackup
	case queue.SubjectRequestRestore, queue.SubjectAPIRestore:
		return queue.KindRestore
	case queue.SubjectRequestPrune:
		return queue.KindPrune
	case queue.SubjectRequestCheck:
		return queue.KindCheck
	}
	return ""
}

// handleRequest handles one message of the request stream. Only a failure
// of the coordinator's own (JetStream not answering) is returned, so that
// the request is delivered again; a request that is wrong is answered and
// acknowledged.
func (c *Coordinator) handleRequest(ctx context.Context, msg jetstream.Msg) error {
	lastTry := false
	if md, err := msg.Metadata(); err == nil && md.NumDelivered >= requestMaxDeliver {
		lastTry = true
	}
	switch msg.Subject() {
	case queue.SubjectRequestBackup, queue.SubjectRequestRestore, queue.SubjectRequestPrune, queue.SubjectRequestCheck:
		kind := kindOf(msg.Subject())
		ans, replyTo, err := c.submit(ctx, kind, msg.Data())
		if err != nil {
			if !lastTry {
				return err
			}
			ans = c.failed(ctx, kind, ans, err)
		}
		c.answer(replyTo, ans)
	case queue.SubjectRequestCancel:
		ans, replyTo, err := c.requestCancel(ctx, msg.Data(), !lastTry)
		if err != nil {
			if !lastTry {
				return err
			}
			ans = c.failed(ctx, "cancel", ans, err)
		}
		if ans.Code == 0 && !queue.Final(ans.State) {
			// Answered once the job has stopped (waitStopped gives up
			// at shutdown), not holding up other requests meanwhile.
			go func() {
				c.waitStopped(ans)
				c.answer(replyTo, ans)
			}()
			return nil
		}
		c.answer(replyTo, ans)
	default:
		c.logger.WarnContext(ctx, "rejected request: unknown subject", "subject", msg.Subject())
	}
	return nil
}

// failed turns a failure of the coordinator's into the answer to a
// request (ans, if not nil, carries its job ID).
func (c *Coordinator) failed(ctx context.Context, request string, ans *queue.JobAccepted, err error) *queue.JobAccepted {
	c.logger.ErrorContext(ctx, "request failed", "request", request, "job_id", jobIDOf(ans), "err", err)
	c.cfg.Metrics.Request(request, "failed")
	return refusal(jobIDOf(ans), queue.ErrorCodeInternal, "", err.Error())
}

func jobIDOf(ans *queue.JobAccepted) string {
	if ans == nil {
		return ""
	}
	return ans.JobID
}

// refusal is the answer refusing a request for problems.
func refusal(jobID string, code int, state string, problems ...string) *queue.JobAccepted {
	return &queue.JobAccepted{
		V: queue.MessageVersion, JobID: jobID, State: state, Code: code,
		Error: strings.Join(problems, "; "), Errors: problems,
	}
}

// answer publishes ans on a request's reply subject, if it gave one.
func (c *Coordinator) answer(replyTo string, ans *queue.JobAccepted) {
	if replyTo == "" || ans == nil {
		return
	}
	if err := c.nc.Publish(replyTo, queue.Encode(ans)); err != nil {
		c.logger.Warn("answer not sent", "job_id", ans.JobID, "reply_to", replyTo, "err", err)
	}
}

// respond answers a request of the micro service with ans: an error (its
// code, its message, and ans as the body) or ans.
func respond(req micro.Request, ans *queue.JobAccepted) {
	if ans.Code != 0 {
		_ = req.Error(fmt.Sprint(ans.Code), ans.Error, queue.Encode(ans))
		return
	}
	_ = req.Respond(queue.Encode(ans))
}

// apiSubmit is the micro endpoint that submits a job of kind.
func (c *Coordinator) apiSubmit(ctx context.Context, kind string) micro.HandlerFunc {
	return func(req micro.Request) {
		ans, replyTo, err := c.submit(ctx, kind, req.Data())
		if err != nil {
			ans = c.failed(ctx, kind, ans, err)
		}
		c.answer(replyTo, ans)
		respond(req, ans)
	}
}

// apiCancel is the micro endpoint that cancels a job. It answers once the
// job has stopped, from a goroutine of its own, so that other cancels are
// not held up meanwhile.
func (c *Coordinator) apiCancel(ctx context.Context) micro.HandlerFunc {
	return func(req micro.Request) {
		ans, replyTo, err := c.requestCancel(ctx, req.Data(), false)
		if err != nil {
			ans = c.failed(ctx, "cancel", ans, err)
		}
		if ans.Code == 0 && !queue.Final(ans.State) {
			go func() {
				c.waitStopped(ans)
				c.answer(replyTo, ans)
				respond(req, ans)
			}()
			return
		}
		c.answer(replyTo, ans)
		respond(req, ans)
	}
}

// submit handles a backup or restore request (kind) and returns its answer
// and reply subject. An error is the coordinator's own failure (JetStream
// not answering); the answer, if not nil, then carries the job ID.
func (c *Coordinator) submit(ctx context.Context, kind string, data []byte) (*queue.JobAccepted, string, error) {
	now := time.Now().UTC()
	job, replyTo, chosen, report := parseJobRequest(kind, data, now)
	logger := c.logger.With("request", kind)
	if chosen {
		logger = logger.With("job_id", job.ID)
	}
	if !report.OK() {
		jobID := ""
		if chosen {
			jobID = job.ID
			if err := c.recordRefusal(ctx, job, report.Error(), now); err != nil {
				return &queue.JobAccepted{JobID: jobID}, replyTo, err
			}
		}
		logger.WarnContext(ctx, "rejected request", "err", report.Error())
		c.cfg.Metrics.Request(kind, "invalid")
		return refusal(jobID, queue.ErrorCodeInvalid, "", report.Problems...), replyTo, nil
	}
	ans := &queue.JobAccepted{V: queue.MessageVersion, JobID: job.ID, State: queue.StateQueued}
	err := c.createJob(ctx, job) // job is the running job's from here on: not read again
	if errors.Is(err, jetstream.ErrKeyExists) {
		existing, loadErr := c.loadJob(ctx, ans.JobID)
		if loadErr != nil {
			return ans, replyTo, fmt.Errorf("job %s: %w", ans.JobID, loadErr)
		}
		if diffs := differences(existing, kind, job); len(diffs) > 0 {
			msg := fmt.Sprintf("job %s already exists (%s) with other parameters: %s; submit under a new job_id",
				existing.ID, existing.State, strings.Join(diffs, ", "))
			logger.WarnContext(ctx, "rejected request: job ID taken", "err", msg)
			c.cfg.Metrics.Request(kind, "conflict")
			ans := refusal(existing.ID, queue.ErrorCodeConflict, existing.State, msg)
			ans.Errors = diffs
			return ans, replyTo, nil
		}
		logger.InfoContext(ctx, "request repeated: the job exists", "state", existing.State)
		c.cfg.Metrics.Request(kind, "repeated")
		ans.State, ans.Existing = existing.State, true
		return ans, replyTo, nil
	}
	if err != nil {
		return ans, replyTo, err
	}
	c.cfg.Metrics.Request(kind, "accepted")
	return ans, replyTo, nil
}

// recordRefusal records a refused request under the job ID the client
// chose, as a failed job, so that whoever follows the job reads why. A
// job that already has the ID is left alone.
func (c *Coordinator) recordRefusal(ctx context.Context, job *queue.Job, why string, now time.Time) error {
	job.State, job.Error, job.Finished = queue.StateFailed, why, now
	_, err := c.kv.Create(ctx, job.ID, queue.Encode(job))
	switch {
	case err == nil:
		c.publishEvent(ctx, job, "")
		return nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return nil // never clobber another job's record
	}
	return fmt.Errorf("record job %s: %w", job.ID, err)
}

// parseJobRequest reads a backup or restore request (kind) and checks it.
// It returns the job it asks for (its ID the client's, chosen, or a new
// one), the reply subject, and every problem found.
func parseJobRequest(kind string, data []byte, now time.Time) (job *queue.Job, replyTo string, chosen bool, r *queue.Report) {
	job = &queue.Job{V: queue.MessageVersion, Kind: kind, State: queue.StateQueued, Created: now}
	var id string
	switch kind {
	case queue.KindBackup:
		req := &queue.BackupRequest{}
		r = queue.DecodeAll(data, req)
		checkBackupAll(req, r)
		job.Backup, id, replyTo = req, req.JobID, req.ReplyTo
	case queue.KindRestore:
		req := &queue.RestoreRequest{}
		r = queue.DecodeAll(data, req)
		checkRestoreAll(req, r)
		job.Restore, id, replyTo = req, req.JobID, req.ReplyTo
	case queue.KindPrune:
		req := &queue.PruneRequest{}
		r = queue.DecodeAll(data, req)
		if !r.NotObject {
			checkCommon(req.JobID, req.Repo, req.ReplyTo, r)
		}
		job.Prune, id, replyTo = req, req.JobID, req.ReplyTo
	case queue.KindCheck:
		req := &queue.CheckRequest{}
		r = queue.DecodeAll(data, req)
		checkCheckAll(req, r)
		job.Check, id, replyTo = req, req.JobID, req.ReplyTo
	default:
		r = &queue.Report{}
		r.Add("unknown request kind %q", kind)
	}
	if r.Bad("job_id") || checkJobID(id) != nil {
		id = ""
	}
	if r.Bad("reply_to") || checkReplyTo(replyTo) != nil {
		replyTo = ""
	}
	chosen = id != ""
	if !chosen {
		id = uuid.NewString()
	}
	job.ID = id
	return job, replyTo, chosen, r
}

func checkJobID(id string) error {
	if id == "" {
		return nil
	}
	return queue.CheckToken("job_id", id)
}

// checkReplyTo requires a reply subject to be one a message can be
// published to.
func checkReplyTo(s string) error {
	if s == "" {
		return nil
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("reply_to %q is not a subject a reply can be published to", s)
		}
	}
	return nil
}

// checkEndpoint adds the problems of a source or target (what) to r.
func checkEndpoint(what string, e queue.Endpoint, r *queue.Report) {
	if err := queue.CheckToken("host", e.Host); err != nil {
		r.Add("%s: %v", what, err)
	}
	if !strings.HasPrefix(e.Path, "/") {
		r.Add("%s: path %q on %s must be absolute", what, e.Path, cmp.Or(e.Host, `""`))
	}
}

// checkCommon adds the problems of the fields every job request has.
func checkCommon(jobID, repo, replyTo string, r *queue.Report) {
	if !r.Bad("job_id") {
		if err := checkJobID(jobID); err != nil {
			r.Add("%v", err)
		}
	}
	if !r.Bad("repo") && repo == "" {
		r.Add("no repository given")
	}
	if !r.Bad("reply_to") {
		if err := checkReplyTo(replyTo); err != nil {
			r.Add("%v", err)
		}
	}
}

// checkBackupAll adds every problem of a backup request to r (skipping the
// fields r already found unreadable) and fills in the defaults of chunk
// size and level.
func checkBackupAll(req *queue.BackupRequest, r *queue.Report) {
	if r.NotObject {
		return
	}
	checkCommon(req.JobID, req.Repo, req.ReplyTo, r)
	if !r.Bad("source") {
		checkEndpoint("source", req.Source, r)
	}
	if !r.Bad("chunk_size") {
		if req.ChunkSize == 0 {
			req.ChunkSize = layout.DefaultChunkSize
		}
		if err := layout.CheckChunkSize(req.ChunkSize); err != nil {
			r.Add("%v", err)
		}
	}
	if !r.Bad("level") {
		if level, err := chunk.ParseLevel(req.Level); err != nil {
			r.Add("%v", err)
		} else {
			req.Level = level.String()
		}
	}
	if !r.Bad("mode") {
		switch req.Mode {
		case "", plan.ModeAuto, plan.ModeVolume, plan.ModeFiles:
		default:
			r.Add("mode %q: want auto, volume or files", req.Mode)
		}
	}
	if !r.Bad("files_threshold") && req.FilesThreshold < 0 {
		r.Add("files_threshold %d must not be negative", req.FilesThreshold)
	}
	if err := checkSelection(req); err != nil {
		r.Add("%v", err)
	}
}

// checkCheckAll adds every problem of a check request to r.
func checkCheckAll(req *queue.CheckRequest, r *queue.Report) {
	if r.NotObject {
		return
	}
	checkCommon(req.JobID, req.Repo, req.ReplyTo, r)
	if !r.Bad("subset") && (req.Subset < 0 || req.Subset > 1) {
		r.Add("subset %g: want a fraction from 0 to 1", req.Subset)
	}
	if !r.Bad("subset") && !r.Bad("read_data") && req.Subset > 0 && !req.ReadData {
		r.Add("a subset selects chunks to read: it needs read_data")
	}
}

// checkRestoreAll adds every problem of a restore request to r.
func checkRestoreAll(req *queue.RestoreRequest, r *queue.Report) {
	if r.NotObject {
		return
	}
	checkCommon(req.JobID, req.Repo, req.ReplyTo, r)
	if !r.Bad("snapshot") && req.Snapshot == "" {
		r.Add("no snapshot given")
	}
	if !r.Bad("targets") {
		if len(req.Targets) == 0 {
			r.Add("no restore target given")
		}
		seen := make(map[queue.Endpoint]bool)
		for _, t := range req.Targets {
			checkEndpoint("target", t, r)
			if seen[t] {
				r.Add("target %s given twice", t)
			}
			seen[t] = true
		}
	}
	if !r.Bad("paths") {
		for _, p := range req.Paths {
			if p == "" {
				r.Add("paths: an empty path")
			}
		}
	}
}

// checkBackup checks a backup request as a submitted one is checked, and
// fills in its defaults; the error names every problem.
func checkBackup(req *queue.BackupRequest) error {
	r := &queue.Report{}
	checkBackupAll(req, r)
	if !r.OK() {
		return errors.New(r.Error())
	}
	return nil
}

// decodeRequest reads and checks a job request (backup, restore, prune,
// check) published on
// subject, as submit does, and returns the job it asks for and its reply
// subject; the error names every problem.
func (c *Coordinator) decodeRequest(subject string, data []byte) (*queue.Job, string, error) {
	kind := kindOf(subject)
	if kind == "" {
		return nil, "", fmt.Errorf("%w: unknown request subject %s", queue.ErrBadMessage, subject)
	}
	job, replyTo, _, r := parseJobRequest(kind, data, time.Now().UTC())
	if !r.OK() {
		return job, replyTo, fmt.Errorf("%w: %s", queue.ErrBadMessage, r.Error())
	}
	return job, replyTo, nil
}

// differences lists what of the job a request of kind asks for (req)
// differs from the existing job of the same ID: nothing for a repeated
// request. Defaults count as given (a chunk size of 0 is the default
// size), the reply subject does not count.
func differences(existing *queue.Job, kind string, req *queue.Job) []string {
	if existing.Kind != kind {
		return []string{fmt.Sprintf("it is a %s, not a %s", existing.Kind, kind)}
	}
	var diffs []string
	diff := func(field string, had, asked any) {
		if had != asked {
			diffs = append(diffs, fmt.Sprintf("%s is %v in the job, %v in the request", field, quote(had), quote(asked)))
		}
	}
	switch kind {
	case queue.KindBackup:
		a, b := existing.Backup, req.Backup
		if a == nil {
			return []string{"the job has no backup request"}
		}
		diff("source", a.Source.String(), b.Source.String())
		diff("repo", a.Repo, b.Repo)
		diff("chunk_size", cmp.Or(a.ChunkSize, layout.DefaultChunkSize), cmp.Or(b.ChunkSize, layout.DefaultChunkSize))
		diff("level", levelName(a.Level), levelName(b.Level))
		diff("mode", cmp.Or(a.Mode, plan.ModeAuto), cmp.Or(b.Mode, plan.ModeAuto))
		diff("files_threshold", cmp.Or(a.FilesThreshold, plan.DefaultFilesThreshold), cmp.Or(b.FilesThreshold, plan.DefaultFilesThreshold))
	case queue.KindRestore:
		a, b := existing.Restore, req.Restore
		if a == nil {
			return []string{"the job has no restore request"}
		}
		diff("repo", a.Repo, b.Repo)
		diff("snapshot", a.Snapshot, b.Snapshot)
		diff("targets", endpoints(a.Targets), endpoints(b.Targets))
		diff("overwrite", a.Overwrite, b.Overwrite)
		diff("paths", strings.Join(a.Paths, ","), strings.Join(b.Paths, ","))
	case queue.KindPrune:
		a, b := existing.Prune, req.Prune
		if a == nil {
			return []string{"the job has no prune request"}
		}
		diff("repo", a.Repo, b.Repo)
		diff("dry_run", a.DryRun, b.DryRun)
	case queue.KindCheck:
		a, b := existing.Check, req.Check
		if a == nil {
			return []string{"the job has no check request"}
		}
		diff("repo", a.Repo, b.Repo)
		diff("read_data", a.ReadData, b.ReadData)
		diff("subset", a.Subset, b.Subset)
	}
	return diffs
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

func levelName(s string) string {
	if l, err := chunk.ParseLevel(s); err == nil {
		return l.String()
	}
	return s
}

func endpoints(es []queue.Endpoint) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.String()
	}
	return strings.Join(s, " ")
}

// requestCancel handles a cancel request: it asks the job to stop and
// returns the answer with the job's state now (the caller waits for it to
// stop: waitStopped), or the answer refusing it. retryUnknown asks for an
// unknown job to be looked up again later (the request stream: the
// job's own request may be handled just after the cancel); an error is the
// coordinator's own failure, or that retry.
func (c *Coordinator) requestCancel(ctx context.Context, data []byte, retryUnknown bool) (*queue.JobAccepted, string, error) {
	var req queue.CancelRequest
	r := queue.DecodeAll(data, &req)
	replyTo, id := req.ReplyTo, req.JobID
	if r.Bad("reply_to") || checkReplyTo(replyTo) != nil {
		replyTo = ""
	}
	if !r.NotObject && !r.Bad("job_id") {
		if err := queue.CheckToken("job_id", id); err != nil {
			r.Add("%v", err)
			id = ""
		}
		if err := checkReplyTo(req.ReplyTo); err != nil && !r.Bad("reply_to") {
			r.Add("%v", err)
		}
	}
	if r.Bad("job_id") {
		id = ""
	}
	logger := c.logger.With("request", "cancel", "job_id", id)
	if !r.OK() {
		logger.WarnContext(ctx, "rejected request", "err", r.Error())
		c.cfg.Metrics.Request("cancel", "invalid")
		return refusal(id, queue.ErrorCodeInvalid, "", r.Problems...), replyTo, nil
	}
	job, err := c.loadJob(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if retryUnknown {
			return nil, replyTo, queue.RetryAfter(time.Second, fmt.Errorf("cancel: no job %s (yet)", id))
		}
		logger.WarnContext(ctx, "rejected request: no such job")
		c.cfg.Metrics.Request("cancel", "not_found")
		return refusal(id, queue.ErrorCodeNotFound, "", fmt.Sprintf("no job %s", id)), replyTo, nil
	}
	if err != nil {
		return &queue.JobAccepted{JobID: id}, replyTo, fmt.Errorf("job %s: %w", id, err)
	}
	switch {
	case job.State == queue.StateCancelled:
		c.cfg.Metrics.Request("cancel", "repeated")
		return &queue.JobAccepted{V: queue.MessageVersion, JobID: id, State: job.State, Existing: true}, replyTo, nil
	case queue.Final(job.State):
		logger.WarnContext(ctx, "rejected request: the job has ended", "state", job.State)
		c.cfg.Metrics.Request("cancel", "conflict")
		return refusal(id, queue.ErrorCodeConflict, job.State, fmt.Sprintf("job %s has already ended: %s", id, job.State)), replyTo, nil
	case !c.cancel(id):
		logger.WarnContext(ctx, "rejected request: the job is not running here", "state", job.State)
		c.cfg.Metrics.Request("cancel", "conflict")
		return refusal(id, queue.ErrorCodeConflict, job.State,
			fmt.Sprintf("job %s is %s but not running on this coordinator yet; try again", id, job.State)), replyTo, nil
	}
	logger.InfoContext(ctx, "job cancel requested", "state", job.State)
	c.cfg.Metrics.Request("cancel", "accepted")
	return &queue.JobAccepted{V: queue.MessageVersion, JobID: id, State: job.State}, replyTo, nil
}

// cancel stops the job jobID runs here, if it does, and reports whether it
// did.
func (c *Coordinator) cancel(jobID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cancel, ok := c.running[jobID]
	if ok {
		cancel(errCancelled)
	}
	return ok
}

// waitStopped waits, for at most cancelWait, until the job of ans has
// reached a final state, and sets ans.State to the state it has then.
func (c *Coordinator) waitStopped(ans *queue.JobAccepted) {
	ctx, cancel := context.WithTimeout(context.Background(), cancelWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if job, err := c.loadJob(ctx, ans.JobID); err == nil {
			ans.State = job.State
			if queue.Final(job.State) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.stopping:
			return
		case <-tick.C:
		}
	}
}

// checkMaintenance checks the job ID and repository of a prune or check
// (a prune schedule's, say); the error names every problem.
func checkMaintenance(jobID, repo string) error {
	r := &queue.Report{}
	checkCommon(jobID, repo, "", r)
	if !r.OK() {
		return errors.New(r.Error())
	}
	return nil
}
