package queue

import (
	"fmt"
	"time"
)

// BucketSchedules is the KV bucket of backup schedules, keyed by name.
const BucketSchedules = "bulk_schedules"

// The coordinator's schedule API (part of the micro service "bulkbackup").
// Add takes a ScheduleAddRequest, list a ScheduleListRequest, and get,
// pause, resume and rm a ScheduleRequest; each answers the Schedule (rm:
// as it was before removal), list a ScheduleListReply. A malformed request,
// a cron expression that does not parse, an unknown time zone or a name
// already taken are answered with error code 400, an unknown name with 404.
const (
	SubjectAPIScheduleAdd    = "bulk.api.schedule.add"
	SubjectAPIScheduleList   = "bulk.api.schedule.list"
	SubjectAPIScheduleGet    = "bulk.api.schedule.get"
	SubjectAPISchedulePause  = "bulk.api.schedule.pause"
	SubjectAPIScheduleResume = "bulk.api.schedule.resume"
	SubjectAPIScheduleRm     = "bulk.api.schedule.rm"
)

// Schedule is a recurring backup: its record in BucketSchedules.
type Schedule struct {
	V      int      `json:"v"`
	Name   string   `json:"name"`
	Source Endpoint `json:"source"`
	Repo   string   `json:"repo"`
	// Selection and Labels are those of each window's BackupRequest.
	Selection
	Labels
	// Cron is a standard five-field cron expression read in Timezone (an
	// IANA zone name; "UTC" if none was given).
	Cron      string `json:"cron"`
	Timezone  string `json:"timezone"`
	Level     string `json:"level"`
	ChunkSize int64  `json:"chunk_size"`
	// Kind is what the schedule starts: a backup of Source (KindBackup,
	// also when empty), or a prune of Repo (KindPrune).
	Kind string `json:"kind,omitempty"`
	// KeepPolicy is applied to the source's snapshots in Repo after each
	// successful backup; the zero policy keeps them all.
	KeepPolicy
	// LastForget says what the keep policy forgot after the last
	// successful backup.
	LastForget *ForgetRecord `json:"last_forget,omitempty"`
	Paused     bool          `json:"paused"`
	Created    time.Time     `json:"created"`
	// Resumed is when the schedule was last resumed: windows that passed
	// while it was paused never fire.
	Resumed time.Time `json:"resumed,omitzero"`
	// Retimed is when its cron expression or time zone was last changed
	// (ScheduleSetRequest): windows of the new timing before it never fire.
	Retimed time.Time `json:"retimed,omitzero"`
	// LastFired is the newest window a job was started for, LastJobID
	// that job (ScheduledJobID of the window).
	LastFired time.Time `json:"last_fired,omitzero"`
	LastJobID string    `json:"last_job_id,omitempty"`
	// LastSkipped is the newest window that came due while a job of the
	// same source was still running, so it started no job; LastSkipReason
	// says which job.
	LastSkipped    time.Time `json:"last_skipped,omitzero"`
	LastSkipReason string    `json:"last_skip_reason,omitempty"`
	// Next is the next window, as the API computes it when answering; it
	// is not stored.
	Next time.Time `json:"next,omitzero"`
}

func (s *Schedule) version() int { return s.V }

// Handled returns the newest window already handled: fired or skipped.
func (s *Schedule) Handled() time.Time {
	if s.LastSkipped.After(s.LastFired) {
		return s.LastSkipped
	}
	return s.LastFired
}

// Since returns when the schedule was created, last resumed or last
// retimed, whichever is latest: windows at or before it never fire.
func (s *Schedule) Since() time.Time {
	since := s.Created
	for _, t := range []time.Time{s.Resumed, s.Retimed} {
		if t.After(since) {
			since = t
		}
	}
	return since
}

// MaxScheduleName is the longest schedule name, so that a scheduled job's
// ID (ScheduledJobID) stays a valid subject token.
const MaxScheduleName = 64

// CheckScheduleName returns an error unless name can name a schedule:
// letters, digits, '-' and '_', at most MaxScheduleName of them.
func CheckScheduleName(name string) error {
	if err := CheckToken("schedule name", name); err != nil {
		return err
	}
	if len(name) > MaxScheduleName {
		return fmt.Errorf("%w: schedule name %q is longer than %d characters", ErrBadToken, name, MaxScheduleName)
	}
	return nil
}

// ScheduledJobID is the ID of the job schedule name starts for window. It is
// the same on every coordinator, so a window's job is created once however
// often it is tried (a restart, a second coordinator).
func ScheduledJobID(name string, window time.Time) string {
	return "sched-" + name + "-" + window.UTC().Format("20060102T150405Z")
}

// ScheduleAddRequest creates a schedule.
type ScheduleAddRequest struct {
	V      int      `json:"v"`
	Name   string   `json:"name"`
	Source Endpoint `json:"source"`
	Repo   string   `json:"repo"`
	Selection
	Labels
	Cron string `json:"cron"`
	// Timezone is an IANA zone name; empty means UTC.
	Timezone string `json:"timezone,omitempty"`
	// Level and ChunkSize are as in BackupRequest; empty means the default.
	Level     string `json:"level,omitempty"`
	ChunkSize int64  `json:"chunk_size,omitempty"`
	// Kind is KindBackup (also when empty) or KindPrune, which needs no
	// Source and no keep policy.
	Kind string `json:"kind,omitempty"`
	KeepPolicy
}

func (r *ScheduleAddRequest) version() int { return r.V }

// ScheduleRequest names one schedule (get, pause, resume, rm).
type ScheduleRequest struct {
	V    int    `json:"v"`
	Name string `json:"name"`
}

func (r *ScheduleRequest) version() int { return r.V }

// ScheduleListRequest lists every schedule.
type ScheduleListRequest struct {
	V int `json:"v"`
}

func (r *ScheduleListRequest) version() int { return r.V }

// ScheduleListReply answers a ScheduleListRequest, sorted by name.
type ScheduleListReply struct {
	V         int        `json:"v"`
	Schedules []Schedule `json:"schedules"`
}

func (r *ScheduleListReply) version() int { return r.V }
