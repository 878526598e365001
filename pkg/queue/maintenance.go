package queue

import (
	"fmt"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/check"
	"github.com/bulkbackup/bulkbackup/pkg/prune"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

// Maintenance: prune and check jobs, which the coordinator cuts into one
// task per shard of the chunk hash space and the compressors run
// (docs/messages.md).

// Maintenance requests and job kinds (clients, MessageVersion).
const (
	// SubjectRequestPrune takes a PruneRequest.
	SubjectRequestPrune = "bulk.request.prune"
	// SubjectRequestCheck takes a CheckRequest.
	SubjectRequestCheck = "bulk.request.check"

	KindPrune = "prune"
	KindCheck = "check"
)

// PruneRequest asks for the chunks no snapshot of Repo names to be
// deleted, while backups go on (docs/format.md section 10).
type PruneRequest struct {
	V     int    `json:"v"`
	JobID string `json:"job_id,omitempty"`
	Repo  string `json:"repo"`
	// DryRun counts what would be deleted, deleting nothing.
	DryRun  bool   `json:"dry_run,omitempty"`
	ReplyTo string `json:"reply_to,omitempty"`
}

func (r *PruneRequest) version() int { return r.V }

// CheckRequest asks for Repo's integrity to be checked: every chunk a
// snapshot names stored whole, and with ReadData read back and checked
// against its hash (a Subset fraction of them, 0 or 1 meaning all).
type CheckRequest struct {
	V        int     `json:"v"`
	JobID    string  `json:"job_id,omitempty"`
	Repo     string  `json:"repo"`
	ReadData bool    `json:"read_data,omitempty"`
	Subset   float64 `json:"subset,omitempty"`
	ReplyTo  string  `json:"reply_to,omitempty"`
}

func (r *CheckRequest) version() int { return r.V }

// CheckReport is a check job's result, in its record (Job.Checked).
type CheckReport struct {
	// The shards' results added up; Findings holds at most
	// check.MaxFindings of them.
	check.Result
	Shards   int     `json:"shards"`
	ReadData bool    `json:"read_data,omitempty"`
	Subset   float64 `json:"subset,omitempty"`
	Seed     uint64  `json:"seed,omitempty"`
	// Affected lists the snapshots that name a missing or damaged chunk,
	// at most MaxAffected of them.
	Affected []AffectedSnapshot `json:"affected,omitempty"`
}

// MaxAffected bounds CheckReport.Affected, and AffectedSnapshot.Files.
const MaxAffected = 100

// AffectedSnapshot is a snapshot that names missing or damaged chunks.
type AffectedSnapshot struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Host string    `json:"host"`
	Path string    `json:"path"`
	// Chunks counts the bad chunks it names; for a files-mode snapshot,
	// Files names (in manifest form) the first MaxAffected files whose
	// content lies in them and FilesTotal counts them all.
	Chunks     int      `json:"chunks"`
	Files      []string `json:"files,omitempty"`
	FilesTotal int      `json:"files_total,omitempty"`
}

// Task operations, the third token of a task subject
// (bulk.task.<op>.<job>). Each has its own message type.
const (
	TaskCondemn = "condemn" // CondemnShard
	TaskSweep   = "sweep"   // SweepShard
	TaskCheck   = "check"   // CheckShard
)

// StreamTasks holds maintenance tasks for the compressors:
// bulk.task.<op>.<job>.
const StreamTasks = "BULK_TASKS"

// ConsumerTasks is the compressors' shared durable on StreamTasks.
const ConsumerTasks = "tasks"

// TaskSubject is where task op of job jobID is published.
func TaskSubject(op, jobID string) string { return "bulk.task." + op + "." + jobID }

// JobTaskFilter matches every task of one job.
func JobTaskFilter(jobID string) string { return "bulk.task.*." + jobID }

// CondemnShard asks to mark shard Shard of prune Prune in Repo
// (prune.Condemn).
type CondemnShard struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
	Repo    string `json:"repo"`
	Prune   string `json:"prune"`
	Shard   int    `json:"shard"`
}

func (t *CondemnShard) version() int { return t.V }
func (*CondemnShard) work()          {}

// SweepShard asks to sweep shard Shard of prune Prune in Repo
// (prune.Sweep).
type SweepShard struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
	Repo    string `json:"repo"`
	Prune   string `json:"prune"`
	Shard   int    `json:"shard"`
}

func (t *SweepShard) version() int { return t.V }
func (*SweepShard) work()          {}

// CheckShard asks to check shard Shard of Shards in Repo (check.Shard).
type CheckShard struct {
	V        int     `json:"v"`
	JobID    string  `json:"job_id"`
	Attempt  int     `json:"attempt"`
	Repo     string  `json:"repo"`
	Shard    int     `json:"shard"`
	Shards   int     `json:"shards"`
	ReadData bool    `json:"read_data,omitempty"`
	Subset   float64 `json:"subset,omitempty"`
	Seed     uint64  `json:"seed,omitempty"`
}

func (t *CheckShard) version() int { return t.V }
func (*CheckShard) work()          {}

// Completion kinds of tasks (bulk.done.<job>.<kind>).
const (
	DoneCondemned = "condemned" // CondemnDone
	DoneSwept     = "swept"     // SweepDone
	DoneChecked   = "checked"   // CheckDone
	DoneAlive     = "alive"     // TaskAlive
)

// CondemnDone records a shard marked.
type CondemnDone struct {
	V      int                 `json:"v"`
	JobID  string              `json:"job_id"`
	Shard  int                 `json:"shard"`
	Result prune.CondemnResult `json:"result"`
	Worker string              `json:"worker,omitempty"`
}

func (d *CondemnDone) version() int { return d.V }
func (*CondemnDone) work()          {}

// SweepDone records a shard swept.
type SweepDone struct {
	V      int                    `json:"v"`
	JobID  string                 `json:"job_id"`
	Shard  int                    `json:"shard"`
	Result repository.ShardResult `json:"result"`
	Worker string                 `json:"worker,omitempty"`
}

func (d *SweepDone) version() int { return d.V }
func (*SweepDone) work()          {}

// CheckDone records a shard checked.
type CheckDone struct {
	V      int          `json:"v"`
	JobID  string       `json:"job_id"`
	Shard  int          `json:"shard"`
	Result check.Result `json:"result"`
	Worker string       `json:"worker,omitempty"`
}

func (d *CheckDone) version() int { return d.V }
func (*CheckDone) work()          {}

// TaskAlive says attempt Attempt of a task is still being worked on: the
// coordinator does not re-issue it meanwhile.
type TaskAlive struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Op      string `json:"op"`
	Shard   int    `json:"shard"`
	Attempt int    `json:"attempt"`
}

func (d *TaskAlive) version() int { return d.V }
func (*TaskAlive) work()          {}

// CondemnDoneMsgID and the others deduplicate the tasks' completions.
func CondemnDoneMsgID(d *CondemnDone) string { return fmt.Sprintf("%s.condemned.%d", d.JobID, d.Shard) }

// SweepDoneMsgID deduplicates a shard's sweep.
func SweepDoneMsgID(d *SweepDone) string { return fmt.Sprintf("%s.swept.%d", d.JobID, d.Shard) }

// CheckDoneMsgID deduplicates a shard's check.
func CheckDoneMsgID(d *CheckDone) string { return fmt.Sprintf("%s.checked.%d", d.JobID, d.Shard) }

// KeepPolicy is a keep policy in restic's vocabulary, as a schedule
// records it: counts of 0 keep nothing by that rule, -1 is unlimited,
// KeepWithin is a period such as "1y6m" (retention.ParseDuration). The
// zero KeepPolicy keeps every snapshot (none is applied).
type KeepPolicy struct {
	KeepLast    int    `json:"keep_last,omitempty"`
	KeepHourly  int    `json:"keep_hourly,omitempty"`
	KeepDaily   int    `json:"keep_daily,omitempty"`
	KeepWeekly  int    `json:"keep_weekly,omitempty"`
	KeepMonthly int    `json:"keep_monthly,omitempty"`
	KeepYearly  int    `json:"keep_yearly,omitempty"`
	KeepWithin  string `json:"keep_within,omitempty"`
}

// Empty reports whether k keeps every snapshot.
func (k KeepPolicy) Empty() bool { return k == KeepPolicy{} }

// Policy returns k as a retention.Policy, or an error naming the field
// that is invalid.
func (k KeepPolicy) Policy() (retention.Policy, error) {
	for _, c := range []struct {
		name string
		n    int
	}{{"keep_last", k.KeepLast}, {"keep_hourly", k.KeepHourly}, {"keep_daily", k.KeepDaily},
		{"keep_weekly", k.KeepWeekly}, {"keep_monthly", k.KeepMonthly}, {"keep_yearly", k.KeepYearly}} {
		if c.n < retention.Unlimited {
			return retention.Policy{}, fmt.Errorf("%s %d: want a count of 0 or more, or -1 for unlimited", c.name, c.n)
		}
	}
	within, err := retention.ParseDuration(k.KeepWithin)
	if err != nil {
		return retention.Policy{}, fmt.Errorf("keep_within: %w", err)
	}
	p := retention.Policy{Last: k.KeepLast, Hourly: k.KeepHourly, Daily: k.KeepDaily, Weekly: k.KeepWeekly,
		Monthly: k.KeepMonthly, Yearly: k.KeepYearly, Within: within}
	if err := p.Validate(); err != nil {
		return retention.Policy{}, err
	}
	return p, nil
}

// ForgetRecord says what a schedule's keep policy forgot after its last
// successful run.
type ForgetRecord struct {
	Time  time.Time `json:"time"`
	JobID string    `json:"job_id"`
	// Kept and Forgotten count the source's snapshots kept and
	// forgotten; Snapshots names the forgotten ones (at most MaxAffected).
	Kept      int      `json:"kept"`
	Forgotten int      `json:"forgotten"`
	Snapshots []string `json:"snapshots,omitempty"`
	Error     string   `json:"error,omitempty"`
}
