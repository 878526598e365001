package queue

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams, subjects and buckets. Subjects follow bulk.<noun>.<verb>[.<host>].
const (
	// StreamRequests keeps job requests until the coordinator takes them, so
	// a request published while the coordinator restarts is not lost.
	StreamRequests = "BULK_REQUESTS"
	// SubjectRequestBackup takes a BackupRequest; CI systems publish here.
	SubjectRequestBackup = "bulk.request.backup"
	// SubjectRequestRestore takes a RestoreRequest.
	SubjectRequestRestore = "bulk.request.restore"
	// SubjectRequestCancel takes a CancelRequest.
	SubjectRequestCancel = "bulk.request.cancel"

	// StreamWork holds work items for readers: bulk.work.<op>.<host>.<job>.
	StreamWork = "BULK_WORK"
	// StreamReady holds the descriptors of raw chunks readers hold for the
	// compressors (ChunkReady): bulk.ready.<job>. The bytes themselves
	// never enter a stream: compressors fetch them from the readers.
	StreamReady = "BULK_READY"
	// StreamDone records completions: bulk.done.<job>.<kind>.
	StreamDone = "BULK_DONE"
	// StreamEvents carries job state and progress: bulk.event.job.<job>.
	StreamEvents = "BULK_EVENTS"
	// BucketJobs is the KV bucket of job records, keyed by job ID.
	BucketJobs = "bulk_jobs"

	// ConsumerCoordinator is the coordinator's durable on StreamRequests.
	ConsumerCoordinator = "coordinator"
	// ConsumerCompressors is the compressors' shared durable on StreamReady.
	ConsumerCompressors = "compressors"
)

// WorkSubject is where work of op for host's job is published; op is one
// of the Op constants.
func WorkSubject(op, host, jobID string) string { return "bulk.work." + op + "." + host + "." + jobID }

// WorkFilter matches all work for host.
func WorkFilter(host string) string { return "bulk.work.*." + host + ".*" }

// JobWorkFilter matches all work of one job.
func JobWorkFilter(jobID string) string { return "bulk.work.*.*." + jobID }

// ReadySubject is where the descriptors of a job's raw chunks go.
func ReadySubject(jobID string) string { return "bulk.ready." + jobID }

// FetchSubject is the request/reply subject the readers of host answer
// FetchRequests on (core NATS, queue group ReaderQueueGroup).
func FetchSubject(host string) string { return "bulk.fetch." + host }

// DoneSubject is where completions of kind (a Done constant) of a job are
// recorded.
func DoneSubject(jobID, kind string) string { return "bulk.done." + jobID + "." + kind }

// DoneFilter matches every completion of a job.
func DoneFilter(jobID string) string { return "bulk.done." + jobID + ".>" }

// EventSubject is where a job's state and progress are published.
func EventSubject(jobID string) string { return "bulk.event.job." + jobID }

// StatSubject is the request/reply subject readers on host answer to
// describe a source (core NATS, queue group "readers").
func StatSubject(host string) string { return "bulk.reader.stat." + host }

// ReaderQueueGroup is the queue group readers of one host share.
const ReaderQueueGroup = "readers"

// ConsumerReader names the durable consumer of host's readers.
func ConsumerReader(host string) string { return "reader-" + host }

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ErrBadToken is wrapped by CheckToken's errors.
var ErrBadToken = errors.New("queue: invalid subject token")

// CheckToken returns an error unless s can stand as one subject token: a host
// name or job ID of letters, digits, '-' and '_'.
func CheckToken(what, s string) error {
	if !tokenRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q (use letters, digits, '-' and '_')", ErrBadToken, what, s)
	}
	return nil
}

// StreamConfig sizes the streams Setup creates.
type StreamConfig struct {
	// Replicas is the replication factor of file-backed streams and the KV
	// buckets (1 for a single server, 3 in a cluster).
	Replicas int
	// WorkerTTL is how long a worker stays listed after its last
	// heartbeat; 0 means DefaultWorkerTTL.
	WorkerTTL time.Duration
}

// Setup creates or updates every stream and bucket of the contract. It is
// idempotent; every service calls it on start.
func Setup(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	streams := []jetstream.StreamConfig{
		{
			Name: StreamRequests, Subjects: []string{"bulk.request.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: 7 * 24 * time.Hour, Duplicates: 10 * time.Minute,
			MaxMsgSize: 1 << 20,
		},
		{
			Name: StreamWork, Subjects: []string{"bulk.work.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, Duplicates: 2 * time.Minute,
		},
		{
			// Small descriptors, durable and replicated like the work
			// items: a NATS node lost takes no chunk with it.
			Name: StreamReady, Subjects: []string{"bulk.ready.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, Duplicates: 2 * time.Minute, MaxMsgSize: 1 << 20,
		},
		{
			// Maintenance tasks for the compressors: one per shard.
			Name: StreamTasks, Subjects: []string{"bulk.task.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, Duplicates: 2 * time.Minute, MaxMsgSize: 1 << 20,
		},
		{
			Name: StreamDone, Subjects: []string{"bulk.done.>"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: 14 * 24 * time.Hour, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamEvents, Subjects: []string{"bulk.event.>"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: 14 * 24 * time.Hour, MaxMsgsPerSubject: 1000,
		},
	}
	for _, sc := range streams {
		if err := retrySetup(ctx, func() error { _, err := js.CreateOrUpdateStream(ctx, sc); return err }); err != nil {
			return fmt.Errorf("set up stream %s: %w", sc.Name, err)
		}
	}
	if cfg.WorkerTTL == 0 {
		cfg.WorkerTTL = DefaultWorkerTTL
	}
	buckets := []jetstream.KeyValueConfig{
		{
			Bucket: BucketJobs, Description: "bulkbackup job records", History: 1,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		},
		{
			Bucket: BucketSchedules, Description: "bulkbackup backup schedules", History: 1,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		},
		{
			Bucket: BucketWorkers, Description: "bulkbackup worker heartbeats", History: 1,
			Storage: jetstream.MemoryStorage, Replicas: cfg.Replicas, TTL: cfg.WorkerTTL,
		},
	}
	for _, kc := range buckets {
		if err := retrySetup(ctx, func() error { _, err := js.CreateOrUpdateKeyValue(ctx, kc); return err }); err != nil {
			return fmt.Errorf("set up bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}

// setupPatience is how long Setup keeps retrying while a cluster is still
// electing leaders after a restart.
const setupPatience = time.Minute

// retrySetup runs op until it succeeds, fails for good, or setupPatience
// passes. Right after a cluster restart the JetStream API times out or
// reports no leader while the nodes elect one; that is worth waiting out
// rather than exiting.
func retrySetup(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(setupPatience)
	for {
		err := op()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !electing(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// electing reports whether err is what JetStream answers while it has no
// leader yet.
func electing(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
