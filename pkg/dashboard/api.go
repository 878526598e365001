package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// ErrNoCoordinator means no coordinator answered an API request.
var ErrNoCoordinator = errors.New("dashboard: no coordinator answers")

// apiError is an error the coordinator's micro service answered with.
type apiError struct {
	Subject string
	Code    string // "400", "404", "500"
	Desc    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s: %s", e.Subject, e.Desc) }

// notFound reports whether err is the coordinator's "no such job or
// schedule".
func notFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == "404"
}

// api is the dashboard's client of the public contract: the coordinator's
// request/reply API (queue.SubjectAPI*) and the request stream. It reads
// nothing the CLI could not read.
type api struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
}

// call sends req on subject and decodes the answer into reply.
func (a *api) call(ctx context.Context, subject string, req, reply any) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	msg, err := a.nc.RequestWithContext(ctx, subject, queue.Encode(req))
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w on %s", ErrNoCoordinator, subject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return &apiError{Subject: subject, Code: msg.Header.Get(micro.ErrorCodeHeader), Desc: desc}
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: decode answer: %w", subject, err)
	}
	return nil
}

// jobs lists up to limit jobs, newest first.
func (a *api) jobs(ctx context.Context, limit int) ([]queue.Job, error) {
	var reply queue.JobsReply
	err := a.call(ctx, queue.SubjectAPIJobs, &queue.JobsRequest{V: queue.MessageVersion, Limit: limit}, &reply)
	return reply.Jobs, err
}

// job returns one job's record.
func (a *api) job(ctx context.Context, id string) (*queue.Job, error) {
	var job queue.Job
	if err := a.call(ctx, queue.SubjectAPIJob, &queue.JobRequest{V: queue.MessageVersion, JobID: id}, &job); err != nil {
		return nil, err
	}
	return &job, nil
}

// workers lists the live readers and compressors.
func (a *api) workers(ctx context.Context) ([]queue.WorkerStatus, error) {
	var reply queue.WorkersReply
	err := a.call(ctx, queue.SubjectAPIWorkers, &queue.WorkersRequest{V: queue.MessageVersion}, &reply)
	return reply.Workers, err
}

// schedules lists every schedule, sorted by name.
func (a *api) schedules(ctx context.Context) ([]queue.Schedule, error) {
	var reply queue.ScheduleListReply
	err := a.call(ctx, queue.SubjectAPIScheduleList, &queue.ScheduleListRequest{V: queue.MessageVersion}, &reply)
	return reply.Schedules, err
}

// history lists every backup run of src, oldest first.
func (a *api) history(ctx context.Context, src queue.Endpoint) ([]queue.Run, error) {
	var reply queue.HistoryReply
	err := a.call(ctx, queue.SubjectAPIHistory, &queue.HistoryRequest{V: queue.MessageVersion, Source: src}, &reply)
	return reply.Runs, err
}

// setPaused pauses or resumes the schedule name.
func (a *api) setPaused(ctx context.Context, name string, paused bool) error {
	subject := queue.SubjectAPIScheduleResume
	if paused {
		subject = queue.SubjectAPISchedulePause
	}
	var s queue.Schedule
	return a.call(ctx, subject, &queue.ScheduleRequest{V: queue.MessageVersion, Name: name}, &s)
}

// submitBackup asks the coordinator for a backup (bulk.api.backup, as CI
// systems do) and returns once it has taken it, so that the job's record
// exists when its page is asked for.
func (a *api) submitBackup(ctx context.Context, req *queue.BackupRequest) error {
	var ans queue.JobAccepted
	if err := a.call(ctx, queue.SubjectAPIBackup, req, &ans); err != nil {
		return err
	}
	if ans.Error != "" {
		return errors.New(ans.Error)
	}
	return nil
}

// submit publishes a request into the request stream, as bulkctl and CI
// systems do.
func (a *api) submit(ctx context.Context, subject string, req any, jobID string) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return queue.Submit(ctx, a.js, subject, req, jobID)
}
