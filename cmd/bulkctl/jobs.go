package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The job commands talk to a running coordinator's API: jobs of the
// in-process fleet end with the command that ran them.
func remoteSession(ctx context.Context, c *common, e *env) (*session, error) {
	if c.natsURL == "" {
		return nil, usageError("needs a running coordinator: give --nats URL or set BULK_NATS")
	}
	return openSession(ctx, c, e.stderr, nil)
}

// remoteCommand parses a command that talks to a running coordinator and
// opens its session: flags, exactly wantArgs positional arguments (what
// names them for the usage error), then the connection.
func remoteCommand(ctx context.Context, e *env, fs *flag.FlagSet, c *common, args []string, wantArgs int, what string) (*session, []string, error) {
	pos, err := parse(e, fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) != wantArgs {
		if wantArgs == 0 {
			return nil, nil, usageError("unexpected arguments %q", pos)
		}
		return nil, nil, usageError("want %s", what)
	}
	s, err := remoteSession(ctx, c, e)
	if err != nil {
		return nil, nil, err
	}
	return s, pos, nil
}

// getJob asks the coordinator for one job's record.
func getJob(ctx context.Context, s *session, id string) (*queue.Job, error) {
	var job queue.Job
	if err := call(ctx, s.nc, queue.SubjectAPIJob, &queue.JobRequest{V: queue.MessageVersion, JobID: id}, &job); err != nil {
		return nil, err
	}
	return &job, nil
}

// call sends an API request to the coordinator and decodes its answer.
func call(ctx context.Context, nc *nats.Conn, subject string, req, reply any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject, queue.Encode(req))
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no coordinator answers on %s (is one running?)", subject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return errors.New(desc)
	}
	return json.Unmarshal(msg.Data, reply)
}

func runJobs(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("jobs", &c)
	state := fs.String("state", "", "only jobs in this state (queued, running, committing, succeeded, failed, cancelled)")
	limit := fs.Int("limit", 20, "at most this many jobs, newest first")
	s, _, err := remoteCommand(ctx, e, fs, &c, args, 0, "")
	if err != nil {
		return err
	}
	defer s.close()
	var reply queue.JobsReply
	if err := call(ctx, s.nc, queue.SubjectAPIJobs, &queue.JobsRequest{V: queue.MessageVersion, State: *state, Limit: *limit}, &reply); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(reply.Jobs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tKIND\tSTATE\tCREATED\tSUBJECT\tPROGRESS")
	for _, j := range reply.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, j.State, j.Created.Local().Format("2006-01-02 15:04:05"), jobSubject(&j), summary(j.Progress))
	}
	return tw.Flush()
}

// jobSubject says what a job works on.
func jobSubject(j *queue.Job) string {
	switch {
	case j.Backup != nil:
		return j.Backup.Source.String() + " -> " + j.Backup.Repo
	case j.Restore != nil:
		var targets []string
		for _, t := range j.Restore.Targets {
			targets = append(targets, t.String())
		}
		return j.Restore.Repo + "@" + cmp.Or(j.SnapshotID, j.Restore.Snapshot) + " -> " + strings.Join(targets, ",")
	case j.Prune != nil:
		return "prune " + j.Prune.Repo
	case j.Check != nil:
		return "check " + j.Check.Repo
	}
	return ""
}

func runJob(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("job", &c)
	watch := fs.Bool("watch", false, "follow the job's progress until it ends")
	s, pos, err := remoteCommand(ctx, e, fs, &c, args, 1, "one JOB ID")
	if err != nil {
		return err
	}
	defer s.close()
	job, err := getJob(ctx, s, pos[0])
	if err != nil {
		return err
	}
	if *watch && !queue.Final(job.State) {
		p := newProgress(e.stderr, c.json)
		_, err := queue.Follow(ctx, s.js, job.ID, p.update)
		p.finish()
		if err != nil {
			return err
		}
		if job, err = getJob(ctx, s, pos[0]); err != nil {
			return err
		}
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(job)
	}
	fmt.Fprintf(e.stdout, "job       %s (%s)\n", job.ID, job.Kind)
	fmt.Fprintf(e.stdout, "state     %s\n", job.State)
	fmt.Fprintf(e.stdout, "what      %s\n", jobSubject(job))
	fmt.Fprintf(e.stdout, "created   %s\n", job.Created.Local().Format(time.RFC3339))
	if !job.Started.IsZero() {
		fmt.Fprintf(e.stdout, "started   %s\n", job.Started.Local().Format(time.RFC3339))
	}
	if !job.Finished.IsZero() {
		fmt.Fprintf(e.stdout, "finished  %s (%s)\n", job.Finished.Local().Format(time.RFC3339), job.Finished.Sub(job.Started).Round(time.Millisecond))
	}
	fmt.Fprintf(e.stdout, "progress  %d/%d chunks, %s\n", job.Progress.ChunksDone, job.Progress.ChunksTotal, summary(job.Progress))
	if job.SnapshotID != "" {
		fmt.Fprintf(e.stdout, "snapshot  %s\n", job.SnapshotID)
	}
	if job.Error != "" {
		fmt.Fprintf(e.stdout, "error     %s\n", job.Error)
	}
	if *watch && job.State != queue.StateSucceeded {
		return fmt.Errorf("job %s %s", job.ID, job.State)
	}
	return nil
}

func runCancel(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("cancel", &c)
	s, pos, err := remoteCommand(ctx, e, fs, &c, args, 1, "one JOB ID")
	if err != nil {
		return err
	}
	defer s.close()
	// The coordinator answers once the job has stopped (or refuses: an
	// unknown job, one that has already ended).
	reqCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, err := s.nc.RequestWithContext(reqCtx, queue.SubjectAPICancel, queue.Encode(&queue.CancelRequest{V: queue.MessageVersion, JobID: pos[0]}))
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no coordinator answers on %s (is one running?)", queue.SubjectAPICancel)
	}
	if err != nil {
		return fmt.Errorf("cancel job %s: %w", pos[0], err)
	}
	var ans queue.JobAccepted
	if err := json.Unmarshal(msg.Data, &ans); err != nil {
		return fmt.Errorf("cancel job %s: %w", pos[0], err)
	}
	if ans.Error != "" {
		return errors.New(ans.Error)
	}
	state := ans.State
	if !queue.Final(state) { // still winding down: follow it to its end
		ev, err := queue.Follow(ctx, s.js, ans.JobID, nil)
		if err != nil {
			return err
		}
		state = ev.State
	}
	fmt.Fprintf(e.stdout, "job %s %s\n", ans.JobID, state)
	return nil
}

func runHistory(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("history", &c)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one HOST:PATH")
	}
	src, err := queue.ParseEndpoint(pos[0])
	if err != nil {
		return usageError("%v", err)
	}
	s, err := remoteSession(ctx, &c, e)
	if err != nil {
		return err
	}
	defer s.close()
	var reply queue.HistoryReply
	if err := call(ctx, s.nc, queue.SubjectAPIHistory, &queue.HistoryRequest{V: queue.MessageVersion, Source: src}, &reply); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(reply.Runs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tRESULT\tBYTES\tSTORED\tNEW\tDURATION\tMB/S\tSNAPSHOT")
	for _, r := range reply.Runs {
		result := r.State
		if r.Error != "" {
			result += ": " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1fs\t%.0f\t%s\n", r.Started.Local().Format("2006-01-02 15:04:05"), result,
			config.FormatBytes(r.SourceBytes), config.FormatBytes(r.StoredBytes), config.FormatBytes(r.NewBytes), r.Seconds, r.MBps, r.SnapshotID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s of %s\n", plural(len(reply.Runs), "run"), src)
	return nil
}

func runWorkers(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("workers", &c)
	s, _, err := remoteCommand(ctx, e, fs, &c, args, 0, "")
	if err != nil {
		return err
	}
	defer s.close()
	var reply queue.WorkersReply
	if err := call(ctx, s.nc, queue.SubjectAPIWorkers, &queue.WorkersRequest{V: queue.MessageVersion}, &reply); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(reply.Workers)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tHOST\tID\tVERSION\tIN FLIGHT\tCHUNKS\tBYTES\tMB/S\tLAST SEEN")
	for _, w := range reply.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%.0f\t%s ago\n", w.Role, w.Host, w.ID, w.Version, w.InFlight, w.Chunks,
			config.FormatBytes(w.Bytes), w.MBps, time.Since(w.LastSeen).Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, plural(len(reply.Workers), "worker"))
	return nil
}
