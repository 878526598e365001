package dashboard

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The views below are what templates and the live feed show: every value
// already formatted, so the page and the script that updates it agree.

// jobView is one job as a row or a live update. The JSON form is what
// /events sends; the script writes each string with textContent.
type jobView struct {
	ID       string `json:"id"`
	Short    string `json:"short"` // the ID as a table shows it
	Kind     string `json:"kind"`
	State    string `json:"state"`
	Final    bool   `json:"final"`
	Message  string `json:"message"`
	Error    string `json:"error"`
	Snapshot string `json:"snapshot"`
	Done     int64  `json:"done"`
	Total    int64  `json:"total"`
	Bytes    string `json:"bytes"`
	Rate     string `json:"rate"`
	ETA      string `json:"eta"`
	Stored   string `json:"stored"`
	Warnings int    `json:"warnings"`

	// From the job record only (events do not carry them).
	What     string          `json:"-"`
	Source   *queue.Endpoint `json:"-"`
	Repo     string          `json:"-"`
	Created  string          `json:"-"`
	Started  string          `json:"-"`
	Finished string          `json:"finished"` // events: the time of the final one
	Mode     string          `json:"-"`
	Reason   string          `json:"-"`
	WarnList []string        `json:"-"`
}

// progressView fills in the progress fields of v.
func (v *jobView) progress(p queue.Progress, state string, stats manifest.Stats) {
	v.Done, v.Total = p.BytesDone, p.BytesTotal
	v.Bytes = formatBytes(p.BytesDone)
	if p.BytesTotal > 0 {
		v.Bytes += " of " + formatBytes(p.BytesTotal)
	}
	v.Rate = formatRate(p.MBps)
	if !queue.Final(state) {
		v.ETA = formatSeconds(p.ETASeconds)
	}
	if stats.StoredBytes > 0 {
		v.Stored = formatBytes(stats.StoredBytes)
	}
	v.Warnings = stats.Warnings
}

// viewOfJob describes a job record.
func viewOfJob(j *queue.Job) jobView {
	v := jobView{
		ID: j.ID, Short: shortID(j.ID), Kind: j.Kind, State: j.State, Final: queue.Final(j.State), Error: j.Error,
		Created: formatTime(j.Created), Started: formatTime(j.Started), Finished: formatTime(j.Finished),
		Mode: j.Mode, Reason: j.Reason, WarnList: j.Warnings,
	}
	if j.State == queue.StateSucceeded || j.Kind == queue.KindRestore {
		v.Snapshot = j.SnapshotID
	}
	v.progress(j.Progress, j.State, j.Stats)
	switch {
	case j.Backup != nil:
		src := j.Backup.Source
		v.Source, v.Repo = &src, j.Backup.Repo
		v.What = src.String() + " → " + j.Backup.Repo
	case j.Restore != nil:
		targets := make([]string, 0, len(j.Restore.Targets))
		for _, t := range j.Restore.Targets {
			targets = append(targets, t.String())
		}
		v.Repo = j.Restore.Repo
		v.What = j.Restore.Repo + " @ " + cmp.Or(j.SnapshotID, j.Restore.Snapshot) + " → " + strings.Join(targets, ", ")
	case j.Prune != nil:
		v.Repo, v.What = j.Prune.Repo, "prune "+j.Prune.Repo
	case j.Check != nil:
		v.Repo, v.What = j.Check.Repo, "check "+j.Check.Repo
	}
	return v
}

// shortID shortens a random job ID (a UUID) to its first 8 characters,
// as git does commits; a chosen ID (a schedule's, a CI pipeline's) says
// something and is kept whole.
func shortID(id string) string {
	if len(id) == 36 && strings.Count(id, "-") == 4 {
		return id[:8]
	}
	return id
}

// viewOfEvent describes a job event.
func viewOfEvent(ev *queue.Event) jobView {
	v := jobView{
		ID: ev.JobID, Short: shortID(ev.JobID), Kind: ev.Kind, State: ev.State, Final: queue.Final(ev.State),
		Message: ev.Message, Error: ev.Error,
	}
	if ev.State == queue.StateSucceeded || ev.Kind == queue.KindRestore {
		v.Snapshot = ev.SnapshotID
	}
	v.progress(ev.Progress, ev.State, ev.Stats)
	if v.Final {
		v.Finished = formatTime(ev.Time)
	}
	return v
}

// workerView is one reader or compressor.
type workerView struct {
	ID       string `json:"id"`
	Role     string `json:"role"`
	Host     string `json:"host"`
	Version  string `json:"version"`
	Workers  int    `json:"workers"`
	InFlight int64  `json:"in_flight"`
	Rate     string `json:"rate"`
	Handled  string `json:"handled"`
	LastSeen string `json:"last_seen"`
}

func viewOfWorker(w *queue.WorkerStatus) workerView {
	return workerView{
		ID: w.ID, Role: w.Role, Host: w.Host, Version: w.Version, Workers: w.Workers, InFlight: w.InFlight,
		Rate:     cmp.Or(formatRate(w.MBps), "0.0 MB/s"),
		Handled:  fmt.Sprintf("%d chunks, %s", w.Chunks, formatBytes(w.Bytes)),
		LastSeen: formatTime(w.LastSeen),
	}
}

// viewsOfWorkers describes workers sorted by role, host and ID.
func viewsOfWorkers(ws []queue.WorkerStatus) []workerView {
	ws = slices.Clone(ws)
	slices.SortFunc(ws, func(a, b queue.WorkerStatus) int {
		return cmp.Or(strings.Compare(a.Role, b.Role), strings.Compare(a.Host, b.Host), strings.Compare(a.ID, b.ID))
	})
	views := make([]workerView, 0, len(ws))
	for i := range ws {
		views = append(views, viewOfWorker(&ws[i]))
	}
	return views
}

// scheduleView is one schedule with its next window and last result.
type scheduleView struct {
	Name       string
	Source     queue.Endpoint
	Repo       string
	Cron       string
	Timezone   string
	Paused     bool
	Next       string
	LastJobID  string
	LastWindow string
	LastResult string // the last job's state, or "skipped"
	LastReason string // why the last window was skipped
}

// viewOfSchedule describes s; lastState is the state of s.LastJobID's job
// ("" when unknown).
func viewOfSchedule(s *queue.Schedule, lastState string) scheduleView {
	v := scheduleView{
		Name: s.Name, Source: s.Source, Repo: s.Repo, Cron: s.Cron, Timezone: s.Timezone,
		Paused: s.Paused, Next: formatTime(s.Next),
	}
	switch {
	case !s.LastSkipped.IsZero() && s.LastSkipped.After(s.LastFired):
		v.LastWindow, v.LastResult, v.LastReason = formatTime(s.LastSkipped), "skipped", s.LastSkipReason
	case !s.LastFired.IsZero():
		v.LastWindow, v.LastJobID, v.LastResult = formatTime(s.LastFired), s.LastJobID, cmp.Or(lastState, "unknown")
	}
	if s.Paused {
		v.Next = ""
	}
	return v
}

// target is a backup the dashboard may start: a source with the
// repository and settings it was last backed up with, by a job or a
// schedule. The dashboard starts no backup of anything else.
type target struct {
	Source queue.Endpoint
	Repo   string
	// The request's settings.
	ChunkSize      int64
	Level          string
	Mode           string
	FilesThreshold int64
	// What the backup leaves out and how it labels its snapshot.
	Selection queue.Selection
	Labels    queue.Labels
	// LastState and LastTime describe the newest job of the pair, if any.
	LastState string
	LastTime  string
	LastJobID string
}

// key identifies a target.
func (t *target) key() string { return t.Source.String() + "\x00" + t.Repo }

// knownTargets collects the targets of jobs (newest first) and schedules,
// one per source and repository, sorted by source and repository.
func knownTargets(jobs []queue.Job, schedules []queue.Schedule) []target {
	seen := make(map[string]int)
	var targets []target
	for i := range jobs {
		j := &jobs[i]
		if j.Kind != queue.KindBackup || j.Backup == nil {
			continue
		}
		t := target{
			Source: j.Backup.Source, Repo: j.Backup.Repo, ChunkSize: j.Backup.ChunkSize, Level: j.Backup.Level,
			Mode: j.Backup.Mode, FilesThreshold: j.Backup.FilesThreshold, Selection: j.Backup.Selection, Labels: j.Backup.Labels,
			LastState: j.State, LastTime: formatTime(j.Created), LastJobID: j.ID,
		}
		if _, ok := seen[t.key()]; !ok {
			seen[t.key()] = len(targets)
			targets = append(targets, t)
		}
	}
	for i := range schedules {
		s := &schedules[i]
		t := target{Source: s.Source, Repo: s.Repo, ChunkSize: s.ChunkSize, Level: s.Level, Selection: s.Selection, Labels: s.Labels}
		if _, ok := seen[t.key()]; !ok {
			seen[t.key()] = len(targets)
			targets = append(targets, t)
		}
	}
	slices.SortFunc(targets, func(a, b target) int {
		return cmp.Or(strings.Compare(a.Source.String(), b.Source.String()), strings.Compare(a.Repo, b.Repo))
	})
	return targets
}

// knownRepos returns the distinct repositories of targets, sorted.
func knownRepos(targets []target) []string {
	var repos []string
	for _, t := range targets {
		repos = append(repos, t.Repo)
	}
	slices.Sort(repos)
	return slices.Compact(repos)
}

// runView is one backup of a source in its history.
type runView struct {
	JobID    string
	Snapshot string
	State    string
	Started  string
	Duration string
	Size     string
	Stored   string
	New      string
	Rate     string
	Error    string
}

func viewOfRun(r *queue.Run) runView {
	v := runView{
		JobID: r.JobID, Snapshot: r.SnapshotID, State: r.State, Started: formatTime(r.Started),
		Duration: formatSeconds(r.Seconds), Rate: formatRate(r.MBps), Error: r.Error,
	}
	if r.State == queue.StateSucceeded {
		v.Size, v.Stored, v.New = formatBytes(r.SourceBytes), formatBytes(r.StoredBytes), formatBytes(r.NewBytes)
	}
	return v
}

// snapshotView is one snapshot of a repository, from its header.
type snapshotView struct {
	ID     string
	Short  string
	Time   string
	Source string
	Mode   string
	Size   string
	Stored string
	New    string
	Chunks int
	Files  int
}

func viewOfSnapshot(s *manifest.Snapshot) snapshotView {
	short := s.ID
	if len(short) > 12 {
		short = short[:12]
	}
	return snapshotView{
		ID: s.ID, Short: short, Time: formatTime(s.Time), Source: s.Host + ":" + s.Path, Mode: s.Mode,
		Size: formatBytes(s.Size), Stored: formatBytes(s.Stats.StoredBytes), New: formatBytes(s.Stats.NewBytes),
		Chunks: s.Stats.Chunks, Files: s.Stats.Files,
	}
}
