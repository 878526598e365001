package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/version"
)

// ServiceName is the name of the coordinator's micro service.
const ServiceName = "bulkbackup"

// ServiceVersion is the version the coordinator's micro service announces:
// the build's (pkg/version, stamped from git describe), as a semantic
// version. The metadata key "version" has it as git describe said it.
func ServiceVersion() string { return version.Semver() }

// endpoint is one endpoint of the micro service.
type endpoint struct {
	name, subject, description string
	// request and response are values of the messages it takes and
	// answers, for their schemas.
	request, response any
	// errors lists the error codes it answers with, and what they mean.
	errors string
	// handle answers a request with the reply, or an error (its code from
	// what it wraps: apiError). Endpoints that answer themselves set
	// handler instead.
	handle  func(ctx context.Context, data []byte) (any, error)
	handler func(ctx context.Context) micro.HandlerFunc
}

// Errors the endpoints share.
const (
	errMalformed = "400: malformed request (unknown field, wrong type or version)"
	errJobCodes  = "400: malformed or invalid request (every problem is listed); " +
		"409: the job_id is taken by a job with other parameters; 500: the coordinator failed (retry)"
)

// endpoints describes the API (queue.SubjectAPI*): what `nats micro info
// bulkbackup` shows of each endpoint (its metadata: description, request
// and response schema, error codes).
func (c *Coordinator) endpoints() []endpoint {
	const schedErrs = errMalformed + "; 404: no schedule of that name"
	return []endpoint{
		{name: "backup", subject: queue.SubjectAPIBackup,
			description: "Submit a backup; answers with the job ID (existing: true for a repeat of the same request under the same job_id) or every problem with the request. bulk.request.backup takes the same request through a stream, answering on reply_to.",
			request:     &queue.BackupRequest{}, response: &queue.JobAccepted{}, errors: errJobCodes,
			handler: func(ctx context.Context) micro.HandlerFunc { return c.apiSubmit(ctx, queue.KindBackup) }},
		{name: "restore", subject: queue.SubjectAPIRestore,
			description: "Submit a restore of a snapshot to one or more targets; answers as backup does.",
			request:     &queue.RestoreRequest{}, response: &queue.JobAccepted{}, errors: errJobCodes,
			handler: func(ctx context.Context) micro.HandlerFunc { return c.apiSubmit(ctx, queue.KindRestore) }},
		{name: "cancel", subject: queue.SubjectAPICancel,
			description: "Cancel a job; answers once it has stopped (at most 10 s), with its state (cancelled).",
			request:     &queue.CancelRequest{}, response: &queue.JobAccepted{},
			errors:  "400: malformed request; 404: no such job; 409: the job has already ended (succeeded or failed); 500: the coordinator failed",
			handler: c.apiCancel},
		{name: "jobs", subject: queue.SubjectAPIJobs, handle: c.apiJobs,
			description: "List jobs, newest first, optionally only those in one state.",
			request:     &queue.JobsRequest{}, response: &queue.JobsReply{}, errors: errMalformed},
		{name: "job", subject: queue.SubjectAPIJob, handle: c.apiJob,
			description: "One job's record: state, progress, timings, error, snapshot.",
			request:     &queue.JobRequest{}, response: &queue.Job{}, errors: errMalformed + "; 404: no such job"},
		{name: "history", subject: queue.SubjectAPIHistory, handle: c.apiHistory,
			description: "Every backup run of one source, oldest first.",
			request:     &queue.HistoryRequest{}, response: &queue.HistoryReply{}, errors: errMalformed},
		{name: "workers", subject: queue.SubjectAPIWorkers, handle: c.apiWorkers,
			description: "The live readers and compressors, from their heartbeats.",
			request:     &queue.WorkersRequest{}, response: &queue.WorkersReply{}, errors: errMalformed},
		{name: "schedule-add", subject: queue.SubjectAPIScheduleAdd, handle: c.apiScheduleAdd,
			description: "Create a backup schedule (a cron expression in a time zone).",
			request:     &queue.ScheduleAddRequest{}, response: &queue.Schedule{},
			errors: "400: malformed request, a cron expression or time zone that does not parse, or a name already taken"},
		{name: "schedule-set", subject: queue.SubjectAPIScheduleSet, handle: c.apiScheduleSet,
			description: "Change a schedule's cron expression, time zone, repository, level, chunk size or keep rules, keeping its history.",
			request:     &queue.ScheduleSetRequest{}, response: &queue.Schedule{}, errors: schedErrs},
		{name: "schedule-list", subject: queue.SubjectAPIScheduleList, handle: c.apiScheduleList,
			description: "List the schedules, by name, with their next window.",
			request:     &queue.ScheduleListRequest{}, response: &queue.ScheduleListReply{}, errors: errMalformed},
		{name: "schedule-get", subject: queue.SubjectAPIScheduleGet, handle: c.apiScheduleGet,
			description: "One schedule, with its next window and its last fired and skipped windows.",
			request:     &queue.ScheduleRequest{}, response: &queue.Schedule{}, errors: schedErrs},
		{name: "schedule-pause", subject: queue.SubjectAPISchedulePause, handle: c.apiSchedulePause,
			description: "Pause a schedule: its windows do not fire until it is resumed.",
			request:     &queue.ScheduleRequest{}, response: &queue.Schedule{}, errors: schedErrs},
		{name: "schedule-resume", subject: queue.SubjectAPIScheduleResume, handle: c.apiScheduleResume,
			description: "Resume a paused schedule; windows that passed while it was paused never fire.",
			request:     &queue.ScheduleRequest{}, response: &queue.Schedule{}, errors: schedErrs},
		{name: "schedule-rm", subject: queue.SubjectAPIScheduleRm, handle: c.apiScheduleRm,
			description: "Remove a schedule; answers with it as it was.",
			request:     &queue.ScheduleRequest{}, response: &queue.Schedule{}, errors: schedErrs},
	}
}

// serveAPI registers the request/reply API (queue.SubjectAPI*) as the NATS
// micro service "bulkbackup". Stop the returned service on shutdown.
func (c *Coordinator) serveAPI(ctx context.Context) (micro.Service, error) {
	svc, err := micro.AddService(c.nc, micro.Config{
		Name: ServiceName, Version: ServiceVersion(),
		Description: "bulkbackup coordinator: submit and cancel jobs, job records, backup history, workers and schedules",
		Metadata: map[string]string{
			"version":         version.Version,
			"message_version": fmt.Sprint(queue.MessageVersion),
			"events":          "bulk.event.job.<job_id> (stream BULK_EVENTS; the last one per job is kept)",
			"docs":            "README.md#nats-subjects-for-ci-systems",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator: micro service: %w", err)
	}
	for _, ep := range c.endpoints() {
		handler := micro.HandlerFunc(func(req micro.Request) {
			reply, err := ep.handle(ctx, req.Data())
			if err != nil {
				code := apiErrorCode(err)
				if code == queue.ErrorCodeInternal {
					c.logger.ErrorContext(ctx, "API request failed", "endpoint", ep.name, "err", err)
				}
				_ = req.Error(fmt.Sprint(code), err.Error(), nil)
				return
			}
			_ = req.RespondJSON(reply)
		})
		if ep.handler != nil {
			handler = ep.handler(ctx)
		}
		meta := map[string]string{
			"description":     ep.description,
			"request_schema":  queue.Schema(ep.request),
			"response_schema": queue.Schema(ep.response),
			"errors":          ep.errors,
		}
		if err := svc.AddEndpoint(ep.name, handler, micro.WithEndpointSubject(ep.subject), micro.WithEndpointMetadata(meta)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("coordinator: endpoint %s: %w", ep.subject, err)
		}
	}
	return svc, nil
}

// apiErrorCode is the API's error code for err: 400 for a malformed or
// invalid request, 404 for an unknown job or schedule, else 500.
func apiErrorCode(err error) int {
	switch {
	case errors.Is(err, queue.ErrBadMessage):
		return queue.ErrorCodeInvalid
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return queue.ErrorCodeNotFound
	}
	return queue.ErrorCodeInternal
}

// allJobs loads every job record.
func (c *Coordinator) allJobs(ctx context.Context) ([]queue.Job, error) {
	lister, err := c.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	var jobs []queue.Job
	for key := range lister.Keys() {
		job, err := c.loadJob(ctx, key)
		if err != nil {
			continue // deleted meanwhile, or unreadable: not listed
		}
		jobs = append(jobs, *job)
	}
	return jobs, nil
}

func (c *Coordinator) apiJobs(ctx context.Context, data []byte) (any, error) {
	var req queue.JobsRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	jobs, err := c.allJobs(ctx)
	if err != nil {
		return nil, err
	}
	if req.State != "" {
		jobs = slices.DeleteFunc(jobs, func(j queue.Job) bool { return j.State != req.State })
	}
	slices.SortFunc(jobs, func(a, b queue.Job) int { return b.Created.Compare(a.Created) })
	if limit := cmp.Or(req.Limit, 100); len(jobs) > limit {
		jobs = jobs[:limit]
	}
	return &queue.JobsReply{V: queue.MessageVersion, Jobs: jobs}, nil
}

func (c *Coordinator) apiJob(ctx context.Context, data []byte) (any, error) {
	var req queue.JobRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := queue.CheckToken("job_id", req.JobID); err != nil {
		return nil, fmt.Errorf("%w: %w", queue.ErrBadMessage, err)
	}
	job, err := c.loadJob(ctx, req.JobID)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", req.JobID, err)
	}
	return job, nil
}

func (c *Coordinator) apiHistory(ctx context.Context, data []byte) (any, error) {
	var req queue.HistoryRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	jobs, err := c.allJobs(ctx)
	if err != nil {
		return nil, err
	}
	reply := &queue.HistoryReply{V: queue.MessageVersion, Runs: []queue.Run{}}
	for _, j := range jobs {
		if j.Kind != queue.KindBackup || j.Backup == nil || j.Backup.Source != req.Source {
			continue
		}
		run := queue.Run{
			JobID: j.ID, SnapshotID: j.SnapshotID, State: j.State, Started: j.Started, Finished: j.Finished,
			SourceBytes: j.Stats.SourceBytes, StoredBytes: j.Stats.StoredBytes, NewBytes: j.Stats.NewBytes,
			Seconds: j.Stats.Seconds, Error: j.Error,
		}
		if j.State != queue.StateSucceeded {
			run.SnapshotID = "" // chosen, never committed
		}
		if run.Started.IsZero() {
			// Refused, or ended before it started: listed when it was
			// asked for, not at the beginning of time.
			run.Started = j.Created
		}
		if run.SourceBytes == 0 {
			// Ended before its commit: the bytes it got through.
			run.SourceBytes = j.Progress.BytesDone
		}
		if run.Seconds == 0 && !j.Finished.IsZero() && !run.Started.IsZero() {
			run.Seconds = j.Finished.Sub(run.Started).Seconds()
		}
		if run.Seconds > 0 && j.State == queue.StateSucceeded {
			run.MBps = float64(run.SourceBytes) / 1e6 / run.Seconds
		}
		reply.Runs = append(reply.Runs, run)
	}
	slices.SortFunc(reply.Runs, func(a, b queue.Run) int { return a.Started.Compare(b.Started) })
	return reply, nil
}

func (c *Coordinator) apiWorkers(ctx context.Context, data []byte) (any, error) {
	var req queue.WorkersRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	workers, err := queue.ListWorkers(ctx, c.js)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(workers, func(a, b queue.WorkerStatus) int {
		return cmp.Or(strings.Compare(a.Role, b.Role), strings.Compare(a.Host, b.Host), strings.Compare(a.ID, b.ID))
	})
	return &queue.WorkersReply{V: queue.MessageVersion, Workers: workers}, nil
}
