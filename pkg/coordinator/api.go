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
)

// ServiceVersion is the version the coordinator's micro service announces.
const ServiceVersion = "1.0.0"

// serveAPI registers the request/reply API (queue.SubjectAPI*) as the NATS
// micro service "bulkbackup". Stop the returned service on shutdown.
func (c *Coordinator) serveAPI(ctx context.Context) (micro.Service, error) {
	svc, err := micro.AddService(c.nc, micro.Config{
		Name: "bulkbackup", Version: ServiceVersion,
		Description: "bulkbackup coordinator: jobs, job records and backup history",
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator: micro service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		handle        func(ctx context.Context, data []byte) (any, error)
	}{
		{"jobs", queue.SubjectAPIJobs, c.apiJobs},
		{"job", queue.SubjectAPIJob, c.apiJob},
		{"history", queue.SubjectAPIHistory, c.apiHistory},
		{"workers", queue.SubjectAPIWorkers, c.apiWorkers},
		{"schedule-add", queue.SubjectAPIScheduleAdd, c.apiScheduleAdd},
		{"schedule-list", queue.SubjectAPIScheduleList, c.apiScheduleList},
		{"schedule-get", queue.SubjectAPIScheduleGet, c.apiScheduleGet},
		{"schedule-pause", queue.SubjectAPISchedulePause, c.apiSchedulePause},
		{"schedule-resume", queue.SubjectAPIScheduleResume, c.apiScheduleResume},
		{"schedule-rm", queue.SubjectAPIScheduleRm, c.apiScheduleRm},
	}
	for _, ep := range endpoints {
		handler := micro.HandlerFunc(func(req micro.Request) {
			reply, err := ep.handle(ctx, req.Data())
			switch {
			case errors.Is(err, queue.ErrBadMessage):
				_ = req.Error("400", err.Error(), nil)
			case errors.Is(err, jetstream.ErrKeyNotFound):
				_ = req.Error("404", err.Error(), nil)
			case err != nil:
				_ = req.Error("500", err.Error(), nil)
			default:
				_ = req.RespondJSON(reply)
			}
		})
		if err := svc.AddEndpoint(ep.name, handler, micro.WithEndpointSubject(ep.subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("coordinator: endpoint %s: %w", ep.subject, err)
		}
	}
	return svc, nil
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
		if run.Seconds == 0 && !j.Finished.IsZero() && !j.Started.IsZero() {
			run.Seconds = j.Finished.Sub(j.Started).Seconds()
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
