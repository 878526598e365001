package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/forget"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/retention"
	"github.com/bulkbackup/bulkbackup/pkg/schedule"
)

// Schedules.
//
// A schedule's record in queue.BucketSchedules is its definition and its
// state: the newest window fired (LastFired, LastJobID) and the newest
// skipped (LastSkipped, LastSkipReason). Every ScheduleTick, and at once
// when Run starts, the scheduler asks schedule.Due whether a window newer
// than both has come (Config.Clock tells the time) and, if so, starts a
// backup for it through createJob, exactly as a BackupRequest would, under
// the window's job ID (queue.ScheduledJobID).
//
// Nothing is lost or done twice across restarts: the record is updated
// only after the job is created, and a window whose job ID already exists
// in BucketJobs counts as fired. A crash between the two, a restart, or a
// second coordinator evaluating the same window therefore cannot start a
// second job (kv.Create on the job ID fails).
//
// Windows missed while no coordinator ran fire once, on start: only the
// newest of them, and the ones before it are superseded. A backup taken
// late is worth more than none until the next window (which for a weekly
// schedule could be days away), and one backup covers everything the
// missed ones would have; running one per missed window would only repeat
// the same work back to back. Windows that pass while a schedule is paused
// never fire (schedule.Schedule.Since).
//
// A window that comes due while a job of the same source is still running
// (queued, running or committing, whoever started it) starts nothing and is
// recorded as skipped, naming that job: two jobs must never read the same
// source at once, and a late run of a window that was skipped would only
// collide with the next one.

// badRequestError marks an error as the client's (micro error code 400)
// without changing its message.
type badRequestError struct{ err error }

func (e *badRequestError) Error() string   { return e.err.Error() }
func (e *badRequestError) Unwrap() []error { return []error{e.err, queue.ErrBadMessage} }

func badRequest(err error) error { return &badRequestError{err: err} }

// scheduleKV returns the schedules bucket.
// namedSchedule decodes a request naming one schedule and returns the
// schedules bucket with the name.
func (c *Coordinator) namedSchedule(ctx context.Context, data []byte) (jetstream.KeyValue, string, error) {
	name, err := scheduleRequest(data)
	if err != nil {
		return nil, "", err
	}
	kv, err := c.scheduleKV(ctx)
	return kv, name, err
}

func (c *Coordinator) scheduleKV(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, queue.BucketSchedules)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	return kv, nil
}

// timing returns what schedule.Due needs of s.
func timing(s *queue.Schedule, spec *schedule.Spec) schedule.Schedule {
	return schedule.Schedule{Spec: spec, Paused: s.Paused, Since: s.Since()}
}

// withNext fills in s.Next as of now.
func (c *Coordinator) withNext(s *queue.Schedule) *queue.Schedule {
	if spec, err := schedule.Parse(s.Cron, s.Timezone); err == nil {
		s.Next = schedule.Next(timing(s, spec), s.Handled(), c.cfg.Clock()).UTC()
	}
	return s
}

// newSchedule validates an add request and returns the schedule's record.
func newSchedule(req *queue.ScheduleAddRequest, now time.Time) (*queue.Schedule, error) {
	if err := queue.CheckScheduleName(req.Name); err != nil {
		return nil, err
	}
	spec, err := schedule.Parse(req.Cron, req.Timezone)
	if err != nil {
		return nil, err
	}
	switch req.Kind {
	case queue.KindPrune:
		if req.Source != (queue.Endpoint{}) || req.Level != "" || req.ChunkSize != 0 || !req.KeepPolicy.Empty() {
			return nil, errors.New("a prune schedule takes a repository only: no source, level, chunk size or keep policy")
		}
		if err := checkMaintenance("", req.Repo); err != nil {
			return nil, err
		}
		return &queue.Schedule{
			V: queue.MessageVersion, Name: req.Name, Kind: queue.KindPrune, Repo: req.Repo,
			Cron: spec.Cron(), Timezone: spec.Timezone(), Created: now.UTC(),
		}, nil
	case "", queue.KindBackup:
	default:
		return nil, fmt.Errorf("schedule kind %q: want %s or %s", req.Kind, queue.KindBackup, queue.KindPrune)
	}
	// The same checks (and defaults) as a backup request's, so every
	// window's request is valid.
	backup := &queue.BackupRequest{V: queue.MessageVersion, Source: req.Source, Repo: req.Repo, ChunkSize: req.ChunkSize, Level: req.Level,
		Selection: req.Selection, Labels: req.Labels}
	if err := checkBackup(backup); err != nil {
		return nil, err
	}
	if !req.KeepPolicy.Empty() {
		if _, err := req.KeepPolicy.Policy(); err != nil {
			return nil, fmt.Errorf("keep policy: %w", err)
		}
	}
	return &queue.Schedule{
		V: queue.MessageVersion, Name: req.Name, Source: backup.Source, Repo: backup.Repo,
		Cron: spec.Cron(), Timezone: spec.Timezone(), Level: backup.Level, ChunkSize: backup.ChunkSize,
		KeepPolicy: req.KeepPolicy, Created: now.UTC(), Selection: backup.Selection, Labels: backup.Labels,
	}, nil
}

func (c *Coordinator) apiScheduleAdd(ctx context.Context, data []byte) (any, error) {
	var req queue.ScheduleAddRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	s, err := newSchedule(&req, c.cfg.Clock())
	if err != nil {
		return nil, badRequest(err)
	}
	kv, err := c.scheduleKV(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, s.Name, queue.Encode(s)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, badRequest(fmt.Errorf("schedule %q already exists (remove it first to change it)", s.Name))
		}
		return nil, fmt.Errorf("add schedule %s: %w", s.Name, err)
	}
	c.logger.InfoContext(ctx, "schedule added", "schedule", s.Name, "source", s.Source.String(), "cron", s.Cron, "timezone", s.Timezone)
	return c.withNext(s), nil
}

func (c *Coordinator) apiScheduleList(ctx context.Context, data []byte) (any, error) {
	var req queue.ScheduleListRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	kv, err := c.scheduleKV(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	reply := &queue.ScheduleListReply{V: queue.MessageVersion, Schedules: []queue.Schedule{}}
	for key := range lister.Keys() {
		s, _, err := loadSchedule(ctx, kv, key)
		if err != nil {
			continue // removed meanwhile, or unreadable: not listed
		}
		reply.Schedules = append(reply.Schedules, *c.withNext(s))
	}
	slices.SortFunc(reply.Schedules, func(a, b queue.Schedule) int { return strings.Compare(a.Name, b.Name) })
	return reply, nil
}

// scheduleRequest decodes a request naming one schedule.
func scheduleRequest(data []byte) (string, error) {
	var req queue.ScheduleRequest
	if err := queue.Decode(data, &req); err != nil {
		return "", err
	}
	if err := queue.CheckScheduleName(req.Name); err != nil {
		return "", badRequest(err)
	}
	return req.Name, nil
}

func (c *Coordinator) apiScheduleGet(ctx context.Context, data []byte) (any, error) {
	kv, name, err := c.namedSchedule(ctx, data)
	if err != nil {
		return nil, err
	}
	s, _, err := loadSchedule(ctx, kv, name)
	if err != nil {
		return nil, err
	}
	return c.withNext(s), nil
}

func (c *Coordinator) apiSchedulePause(ctx context.Context, data []byte) (any, error) {
	return c.changeSchedule(ctx, data, "schedule paused", func(s *queue.Schedule) {
		s.Paused = true
	})
}

func (c *Coordinator) apiScheduleResume(ctx context.Context, data []byte) (any, error) {
	return c.changeSchedule(ctx, data, "schedule resumed", func(s *queue.Schedule) {
		if s.Paused {
			s.Paused, s.Resumed = false, c.cfg.Clock().UTC()
		}
	})
}

func (c *Coordinator) apiScheduleRm(ctx context.Context, data []byte) (any, error) {
	kv, name, err := c.namedSchedule(ctx, data)
	if err != nil {
		return nil, err
	}
	s, _, err := loadSchedule(ctx, kv, name)
	if err != nil {
		return nil, err
	}
	if err := kv.Delete(ctx, name); err != nil {
		return nil, fmt.Errorf("remove schedule %s: %w", name, err)
	}
	c.logger.InfoContext(ctx, "schedule removed", "schedule", name)
	s.Next = time.Time{}
	return s, nil
}

// changeSchedule applies change to the named schedule's record, retrying
// when the scheduler or another client updates it meanwhile.
func (c *Coordinator) changeSchedule(ctx context.Context, data []byte, what string, change func(*queue.Schedule)) (any, error) {
	kv, name, err := c.namedSchedule(ctx, data)
	if err != nil {
		return nil, err
	}
	return c.changeNamedSchedule(ctx, kv, name, what, change)
}

// changeNamedSchedule is changeSchedule for a schedule named by the caller.
func (c *Coordinator) changeNamedSchedule(ctx context.Context, kv jetstream.KeyValue, name, what string, change func(*queue.Schedule)) (any, error) {
	for attempt := 0; ; attempt++ {
		s, entry, err := loadSchedule(ctx, kv, name)
		if err != nil {
			return nil, err
		}
		change(s)
		_, err = kv.Update(ctx, name, queue.Encode(s), entry.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update schedule %s: %w", name, err)
		}
		c.logger.InfoContext(ctx, what, "schedule", name)
		return c.withNext(s), nil
	}
}

// loadSchedule reads one schedule's record. An unknown name is an error
// wrapping jetstream.ErrKeyNotFound.
func loadSchedule(ctx context.Context, kv jetstream.KeyValue, name string) (*queue.Schedule, jetstream.KeyValueEntry, error) {
	entry, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, fmt.Errorf("no schedule named %q: %w", name, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("schedule %q: %w", name, err)
	}
	var s queue.Schedule
	if err := queue.Decode(entry.Value(), &s); err != nil {
		return nil, nil, fmt.Errorf("schedule %q: %w", name, err)
	}
	s.Next = time.Time{}
	return &s, entry, nil
}

// runSchedules starts the backups of due schedules until ctx is cancelled.
func (c *Coordinator) runSchedules(ctx context.Context) {
	ticker := time.NewTicker(c.cfg.ScheduleTick)
	defer ticker.Stop()
	for {
		c.fireSchedules(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// fireSchedules handles every schedule once, in name order, so of two
// schedules of one source due at once the first by name runs. It reads the
// clock once, first.
func (c *Coordinator) fireSchedules(ctx context.Context) {
	now := c.cfg.Clock()
	kv, err := c.scheduleKV(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.WarnContext(ctx, "schedules not checked", "err", err)
		}
		return
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.WarnContext(ctx, "schedules not checked", "err", err)
		}
		return
	}
	var names []string
	for key := range lister.Keys() {
		names = append(names, key)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := c.fireSchedule(ctx, kv, name, now); err != nil && ctx.Err() == nil {
			c.logger.WarnContext(ctx, "schedule not checked", "schedule", name, "err", err)
		}
	}
}

// fireSchedule starts the backup of schedule name if a window is due at
// now, or records the window as skipped if its source is busy.
func (c *Coordinator) fireSchedule(ctx context.Context, kv jetstream.KeyValue, name string, now time.Time) error {
	s, entry, err := loadSchedule(ctx, kv, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		return err
	}
	spec, err := schedule.Parse(s.Cron, s.Timezone)
	if err != nil {
		return err
	}
	window, due := schedule.Due(timing(s, spec), s.Handled(), now)
	if !due {
		return nil
	}
	window = window.UTC()
	jobID := queue.ScheduledJobID(s.Name, window)
	logger := c.logger.With("schedule", s.Name, "window", window, "job_id", jobID)

	_, err = c.loadJob(ctx, jobID)
	switch {
	case err == nil:
		// The window's job exists: created before a restart that came
		// before this record was updated, or by another coordinator.
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("look up job %s: %w", jobID, err)
	default:
		var busy *queue.Job
		if s.Kind == queue.KindPrune {
			busy, err = c.repoPruning(ctx, s.Repo)
		} else {
			busy, err = c.sourceBusy(ctx, s.Source)
		}
		if err != nil {
			return err
		}
		if busy != nil {
			s.LastSkipped = window
			s.LastSkipReason = fmt.Sprintf("job %s of %s was still %s", busy.ID, scheduleSubject(s), busy.State)
			logger.WarnContext(ctx, "scheduled job skipped", "reason", s.LastSkipReason)
			return c.saveScheduleState(ctx, kv, s, entry.Revision())
		}
		subject, req := queue.SubjectRequestBackup, any(&queue.BackupRequest{
			V: queue.MessageVersion, JobID: jobID, Source: s.Source, Repo: s.Repo, ChunkSize: s.ChunkSize, Level: s.Level,
			Selection: s.Selection, Labels: s.Labels,
		})
		if s.Kind == queue.KindPrune {
			subject, req = queue.SubjectRequestPrune, &queue.PruneRequest{V: queue.MessageVersion, JobID: jobID, Repo: s.Repo}
		}
		job, _, err := c.decodeRequest(subject, queue.Encode(req))
		if err != nil { // only a record not written by apiScheduleAdd gets here
			s.LastSkipped, s.LastSkipReason = window, "invalid request: "+err.Error()
			logger.WarnContext(ctx, "scheduled job skipped", "reason", s.LastSkipReason)
			return c.saveScheduleState(ctx, kv, s, entry.Revision())
		}
		job.Schedule = s.Name
		if err := c.createJob(ctx, job); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		logger.InfoContext(ctx, "scheduled job started", "kind", job.Kind, "subject", scheduleSubject(s))
	}
	s.LastFired, s.LastJobID = window, jobID
	return c.saveScheduleState(ctx, kv, s, entry.Revision())
}

// saveScheduleState writes s's state if its record is still at revision.
// If it changed meanwhile (paused, removed, or updated by another
// coordinator) nothing is written: the next tick reads it afresh, and finds
// a fired window's job by its ID.
func (c *Coordinator) saveScheduleState(ctx context.Context, kv jetstream.KeyValue, s *queue.Schedule, revision uint64) error {
	_, err := kv.Update(ctx, s.Name, queue.Encode(s), revision)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("save schedule %s: %w", s.Name, err)
	}
	return nil
}

// scheduleSubject says what a schedule works on: its source, or for a
// prune schedule its repository.
func scheduleSubject(s *queue.Schedule) string {
	if s.Kind == queue.KindPrune {
		return s.Repo
	}
	return s.Source.String()
}

// repoPruning returns a prune job of repo that has not ended, or nil.
func (c *Coordinator) repoPruning(ctx context.Context, repo string) (*queue.Job, error) {
	jobs, err := c.allJobs(ctx)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		if j := &jobs[i]; !queue.Final(j.State) && j.Prune != nil && j.Prune.Repo == repo {
			return j, nil
		}
	}
	return nil, nil
}

// applyKeep applies the keep policy of the schedule that started job, a
// backup that has just committed, to its source's snapshots in repo, and
// records what it forgot in the schedule (LastForget). A failure is
// recorded there and logged: the backup itself succeeded.
func (c *Coordinator) applyKeep(ctx context.Context, job *queue.Job, repo *repository.Repository) {
	kv, err := c.scheduleKV(ctx)
	if err != nil {
		return
	}
	s, _, err := loadSchedule(ctx, kv, job.Schedule)
	if err != nil || s.KeepPolicy.Empty() {
		return
	}
	rec := &queue.ForgetRecord{Time: c.cfg.Clock().UTC(), JobID: job.ID}
	logger := c.logger.With("schedule", s.Name, "job_id", job.ID)
	policy, err := s.KeepPolicy.Policy()
	var groups []retention.Group
	if err == nil {
		groups, err = forget.Plan(ctx, repo, policy, retention.DefaultGroupBy,
			&manifest.Filter{Hosts: []string{job.Backup.Source.Host}, Paths: []string{job.Backup.Source.Path}}, c.cfg.Clock())
	}
	var forgotten []string
	if err == nil {
		forgotten, err = forget.Remove(ctx, repo, groups)
	}
	for _, g := range groups {
		rec.Kept += len(g.Keep)
	}
	rec.Forgotten = len(forgotten)
	rec.Snapshots = forgotten[:min(len(forgotten), queue.MaxAffected)]
	if err != nil {
		rec.Error = err.Error()
		logger.WarnContext(ctx, "keep policy not applied", "err", err)
	} else {
		logger.InfoContext(ctx, "keep policy applied", "kept", rec.Kept, "forgotten", rec.Forgotten)
	}
	if _, err := c.changeNamedSchedule(ctx, kv, s.Name, "keep policy recorded", func(s *queue.Schedule) { s.LastForget = rec }); err != nil {
		logger.WarnContext(ctx, "what the keep policy forgot is not recorded", "err", err)
	}
}

// sourceBusy returns a job that has not ended and reads or writes src, or
// nil if there is none.
func (c *Coordinator) sourceBusy(ctx context.Context, src queue.Endpoint) (*queue.Job, error) {
	jobs, err := c.allJobs(ctx)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		j := &jobs[i]
		if queue.Final(j.State) {
			continue
		}
		if j.Backup != nil && j.Backup.Source == src || j.Restore != nil && slices.Contains(j.Restore.Targets, src) {
			return j, nil
		}
	}
	return nil, nil
}
