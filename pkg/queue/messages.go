package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// MessageVersion is the version of the JSON messages clients exchange with
// the coordinator: requests, job records, events, the API. Every message
// carries its version in "v"; receivers reject versions they do not know.
// The fleet's own messages have their own version, WorkVersion.
const MessageVersion = 1

// ErrBadMessage is wrapped by every decoding and validation error.
var ErrBadMessage = errors.New("queue: malformed message")

// Decode parses a JSON message strictly (unknown fields are errors) and
// checks its version. Messages are small; oversized ones are refused.
func Decode(data []byte, v interface{ version() int }) error {
	if len(data) > 1<<20 {
		return fmt.Errorf("%w: %d bytes exceeds 1 MiB", ErrBadMessage, len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF { // More would accept a stray '}' or ']'
		return fmt.Errorf("%w: trailing data after the JSON object", ErrBadMessage)
	}
	want := MessageVersion
	if _, ok := v.(interface{ work() }); ok {
		want = WorkVersion
	}
	if got := v.version(); got != want {
		return fmt.Errorf("%w: version %d (want %d)", ErrBadMessage, got, want)
	}
	return nil
}

// Encode returns the JSON form of a message.
func Encode(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queue: encode %T: %v", v, err)) // our own types always marshal
	}
	return data
}

// Endpoint is a path on a host: a backup source or a restore target.
type Endpoint struct {
	Host string `json:"host"`
	Path string `json:"path"`
}

// ParseEndpoint parses "HOST:PATH".
func ParseEndpoint(s string) (Endpoint, error) {
	host, path, ok := strings.Cut(s, ":")
	if !ok || host == "" || path == "" {
		return Endpoint{}, fmt.Errorf("%q: want HOST:PATH", s)
	}
	e := Endpoint{Host: host, Path: path}
	return e, e.Check()
}

// String returns "HOST:PATH".
func (e Endpoint) String() string { return e.Host + ":" + e.Path }

// Check validates the host name and requires an absolute path.
func (e Endpoint) Check() error {
	if err := CheckToken("host", e.Host); err != nil {
		return err
	}
	if !strings.HasPrefix(e.Path, "/") {
		return fmt.Errorf("path %q on %s must be absolute", e.Path, e.Host)
	}
	return nil
}

// BackupRequest asks for a backup; published on SubjectRequestBackup.
type BackupRequest struct {
	V int `json:"v"`
	// JobID is optional: a client that sets it (a UUID) can follow the
	// job's events before the coordinator answers, and a repeated publish
	// with the same ID is one job.
	JobID  string   `json:"job_id,omitempty"`
	Source Endpoint `json:"source"`
	// Repo is where to store: a directory, file://PATH or s3://BUCKET/PREFIX.
	Repo string `json:"repo"`
	// ChunkSize in bytes; 0 means the default.
	ChunkSize int64 `json:"chunk_size,omitempty"`
	// Level is fastest (default), default, better or best.
	Level string `json:"level,omitempty"`
	// Mode is auto (default), volume or files; see plan.ChooseMode.
	Mode string `json:"mode,omitempty"`
	// FilesThreshold is how many files make auto mode read a mounted
	// filesystem's device instead; 0 means plan.DefaultFilesThreshold.
	FilesThreshold int64 `json:"files_threshold,omitempty"`
	// Selection leaves entries of a tree out (files mode only); Labels
	// tag the snapshot and may name its host. See selection.go.
	Selection
	Labels
	// ReplyTo, if set, receives a JobAccepted message.
	ReplyTo string `json:"reply_to,omitempty"`
}

func (r *BackupRequest) version() int { return r.V }

// RestoreRequest asks for a snapshot to be written to one or more targets;
// published on SubjectRequestRestore.
type RestoreRequest struct {
	V        int        `json:"v"`
	JobID    string     `json:"job_id,omitempty"`
	Repo     string     `json:"repo"`
	Snapshot string     `json:"snapshot"` // ID, unique prefix or "latest"
	Targets  []Endpoint `json:"targets"`
	// Overwrite allows writing over an existing regular file.
	Overwrite bool `json:"overwrite,omitempty"`
	// Paths, for a files-mode snapshot, restores only these entries and
	// what lies under them (relative to the snapshot's root).
	Paths []string `json:"paths,omitempty"`
	// Filter, with Snapshot "latest", restores the newest snapshot that
	// matches it.
	Filter  *manifest.Filter `json:"filter,omitempty"`
	ReplyTo string           `json:"reply_to,omitempty"`
}

func (r *RestoreRequest) version() int { return r.V }

// CancelRequest asks for a running job to be cancelled.
type CancelRequest struct {
	V     int    `json:"v"`
	JobID string `json:"job_id"`
	// ReplyTo, if set, receives a JobAccepted message: the job's state once
	// it has ended (or after a few seconds), or why it cannot be cancelled.
	ReplyTo string `json:"reply_to,omitempty"`
}

func (r *CancelRequest) version() int { return r.V }

// JobAccepted answers a request: on its ReplyTo, and as the reply of the
// API's bulk.api.backup, bulk.api.restore and bulk.api.cancel (see
// SubjectAPIBackup).
type JobAccepted struct {
	V     int    `json:"v"`
	JobID string `json:"job_id,omitempty"`
	// State is the job's state when the answer was sent (queued for a job
	// just created; for a cancel, cancelled once the job has stopped).
	State string `json:"state,omitempty"`
	// Existing says a job of this ID already existed with the same
	// parameters: the request was a repeat and changed nothing.
	Existing bool `json:"existing,omitempty"`
	// Error says why the request was refused; Errors lists every problem
	// found with it (Error joins them), and Code classifies it as the API's
	// error codes do (ErrorCode*).
	Error  string   `json:"error,omitempty"`
	Errors []string `json:"errors,omitempty"`
	Code   int      `json:"code,omitempty"`
}

func (r *JobAccepted) version() int { return r.V }

// Job kinds.
const (
	KindBackup  = "backup"
	KindRestore = "restore"
)

// Job states. Succeeded, Failed and Cancelled are final.
const (
	StateQueued     = "queued"
	StateRunning    = "running"
	StateCommitting = "committing"
	StateSucceeded  = "succeeded"
	StateFailed     = "failed"
	StateCancelled  = "cancelled"
)

// Final reports whether state is a final state.
func Final(state string) bool {
	return state == StateSucceeded || state == StateFailed || state == StateCancelled
}

// Job is a job's record in BucketJobs.
type Job struct {
	V       int             `json:"v"`
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Backup  *BackupRequest  `json:"backup,omitempty"`
	Restore *RestoreRequest `json:"restore,omitempty"`
	Prune   *PruneRequest   `json:"prune,omitempty"`
	Check   *CheckRequest   `json:"check,omitempty"`
	// Schedule names the schedule that started the job, if one did.
	Schedule string `json:"schedule,omitempty"`
	State    string `json:"state"`
	// SnapshotID is chosen when a backup is planned, so a resumed job
	// commits under the same ID; for a restore it is the snapshot restored.
	SnapshotID string    `json:"snapshot_id,omitempty"`
	Created    time.Time `json:"created"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Error      string    `json:"error,omitempty"`
	// Epoch counts how often the job was (re)started; work published in a
	// later epoch gets fresh message IDs.
	Epoch    int            `json:"epoch"`
	Progress Progress       `json:"progress"`
	Stats    manifest.Stats `json:"stats"`
	// Mode is how a backup reads its source and Reason why; Device is the
	// block device read instead of a directory, if any.
	Mode   string `json:"mode,omitempty"`
	Reason string `json:"reason,omitempty"`
	Device string `json:"device,omitempty"`
	// Source is what the backup of a volume saw of it before reading it,
	// to tell, when every chunk is read, whether it changed meanwhile.
	Source *SourceState `json:"source,omitempty"`
	// Warnings lists what a job that succeeded could not do (files not
	// read, changed while read, skipped), at most MaxWarnings of them;
	// Stats.Warnings counts them all.
	Warnings []string `json:"warnings,omitempty"`
	// Pruned is a prune's state as it ended (or, running, as far as it
	// got); Checked a check's report.
	Pruned  *repository.PruneState `json:"pruned,omitempty"`
	Checked *CheckReport           `json:"checked,omitempty"`
}

// SourceState is a volume's size and modification time at one moment.
type SourceState struct {
	Size  int64 `json:"size"`
	MTime int64 `json:"mtime,omitempty"`
}

// MaxWarnings bounds the warnings a job record and its events carry.
const MaxWarnings = 100

func (j *Job) version() int { return j.V }

// Progress is how far a job is.
type Progress struct {
	ChunksDone  int     `json:"chunks_done"`
	ChunksTotal int     `json:"chunks_total"`
	BytesDone   int64   `json:"bytes_done"`
	BytesTotal  int64   `json:"bytes_total"`
	MBps        float64 `json:"mb_per_s"`
	ETASeconds  float64 `json:"eta_s"`
}

// Event is published on EventSubject at each state change and periodically
// with progress while a job runs.
type Event struct {
	V          int       `json:"v"`
	JobID      string    `json:"job_id"`
	Kind       string    `json:"kind"`
	State      string    `json:"state"`
	Time       time.Time `json:"time"`
	Progress   Progress  `json:"progress"`
	SnapshotID string    `json:"snapshot_id,omitempty"`
	Error      string    `json:"error,omitempty"`
	// Message says what a running job is waiting for, if anything.
	Message  string         `json:"message,omitempty"`
	Stats    manifest.Stats `json:"stats"`
	Mode     string         `json:"mode,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Device   string         `json:"device,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

func (e *Event) version() int { return e.V }

// Event returns the event that says the job is as its record says, with
// message (what a running job waits for, if anything), stamped now.
func (j *Job) Event(message string) *Event {
	return &Event{
		V: MessageVersion, JobID: j.ID, Kind: j.Kind, State: j.State, Time: time.Now().UTC(),
		Progress: j.Progress, SnapshotID: j.SnapshotID, Error: j.Error, Message: message, Stats: j.Stats,
		Mode: j.Mode, Reason: j.Reason, Device: j.Device, Warnings: j.Warnings,
	}
}

// StatRequest asks a host's reader to describe a source.
type StatRequest struct {
	V    int    `json:"v"`
	Path string `json:"path"`
	// CountLimit, for a directory, asks to count its files up to one past
	// this limit and to say whether it is a mounted filesystem's root.
	CountLimit int64 `json:"count_limit,omitempty"`
}

func (r *StatRequest) version() int { return r.V }

// StatReply describes a source, or says why it cannot be backed up.
type StatReply struct {
	V     int    `json:"v"`
	Size  int64  `json:"size"`
	Kind  string `json:"kind,omitempty"` // a manifest.Kind*
	Error string `json:"error,omitempty"`
	// Directory facts asked for by CountLimit (see plan.SourceFacts).
	Files     int64  `json:"files,omitempty"`
	MountRoot bool   `json:"mount_root,omitempty"`
	Device    string `json:"device,omitempty"`
	// MTime is a volume file's modification time (ns since the epoch);
	// 0 for a block device, whose node does not change as it is written.
	MTime int64 `json:"mtime,omitempty"`
	// FileMode is a volume file's permission bits (07777 at most); absent
	// for a block device.
	FileMode *uint32 `json:"file_mode,omitempty"`
}

func (r *StatReply) version() int { return r.V }

// The coordinator's request/reply API, served as the NATS micro service
// "bulkbackup" (so `nats micro ls` lists it). Errors come back as micro
// error headers (Nats-Service-Error, Nats-Service-Error-Code).
const (
	// SubjectAPIJobs takes a JobsRequest and answers a JobsReply.
	SubjectAPIJobs = "bulk.api.jobs"
	// SubjectAPIJob takes a JobRequest and answers a Job.
	SubjectAPIJob = "bulk.api.job"
	// SubjectAPIHistory takes a HistoryRequest and answers a HistoryReply.
	SubjectAPIHistory = "bulk.api.history"
)

// JobsRequest lists jobs, newest first.
type JobsRequest struct {
	V int `json:"v"`
	// State, if set, keeps only jobs in that state.
	State string `json:"state,omitempty"`
	// Limit caps the number of jobs; 0 means 100.
	Limit int `json:"limit,omitempty"`
}

func (r *JobsRequest) version() int { return r.V }

// JobsReply answers a JobsRequest.
type JobsReply struct {
	V    int   `json:"v"`
	Jobs []Job `json:"jobs"`
}

func (r *JobsReply) version() int { return r.V }

// JobRequest asks for one job's record.
type JobRequest struct {
	V     int    `json:"v"`
	JobID string `json:"job_id"`
}

func (r *JobRequest) version() int { return r.V }

// HistoryRequest asks for every backup run of one source.
type HistoryRequest struct {
	V      int      `json:"v"`
	Source Endpoint `json:"source"`
}

func (r *HistoryRequest) version() int { return r.V }

// Run is one backup of a source, as history reports it.
type Run struct {
	JobID       string    `json:"job_id"`
	SnapshotID  string    `json:"snapshot_id,omitempty"`
	State       string    `json:"state"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	SourceBytes int64     `json:"source_bytes"`
	StoredBytes int64     `json:"stored_bytes"`
	NewBytes    int64     `json:"new_bytes"`
	Seconds     float64   `json:"seconds"`
	MBps        float64   `json:"mb_per_s"`
	Error       string    `json:"error,omitempty"`
}

// HistoryReply answers a HistoryRequest, oldest run first.
type HistoryReply struct {
	V    int   `json:"v"`
	Runs []Run `json:"runs"`
}

func (r *HistoryReply) version() int { return r.V }
