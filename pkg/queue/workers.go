package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/version"
)

// BucketWorkers is the KV bucket where readers and compressors announce
// themselves; an entry expires WorkerTTL after its last heartbeat, so a
// worker that stops heartbeating drops off the fleet view by itself.
const BucketWorkers = "bulk_workers"

// DefaultWorkerTTL is how long a worker stays listed after its last
// heartbeat; workers heartbeat three times per TTL.
const DefaultWorkerTTL = 15 * time.Second

// SubjectAPIWorkers takes a WorkersRequest and answers a WorkersReply.
const SubjectAPIWorkers = "bulk.api.workers"

// Worker roles.
const (
	RoleReader     = "reader"
	RoleCompressor = "compressor"
)

// WorkerStatus is one worker's heartbeat.
type WorkerStatus struct {
	V        int       `json:"v"`
	ID       string    `json:"id"`
	Role     string    `json:"role"`
	Host     string    `json:"host"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	Workers  int       `json:"workers"`
	// InFlight counts chunks being handled now; Chunks and Bytes count
	// what this worker has handled since it started.
	InFlight int64 `json:"in_flight"`
	Chunks   int64 `json:"chunks"`
	Bytes    int64 `json:"bytes"`
	// MBps is the worker's throughput over its last heartbeat interval.
	MBps float64 `json:"mb_per_s"`
	// Recipient is, for a reader, its host's age recipient (age1…): restore
	// clients wrap the keys of a restore of an encrypted repository to it,
	// once they trust it (docs/encryption.md section 8.2).
	Recipient string `json:"recipient,omitempty"`
}

func (w *WorkerStatus) version() int { return w.V }

// WorkersRequest lists the live workers.
type WorkersRequest struct {
	V int `json:"v"`
}

func (r *WorkersRequest) version() int { return r.V }

// WorkersReply answers a WorkersRequest.
type WorkersReply struct {
	V       int            `json:"v"`
	Workers []WorkerStatus `json:"workers"`
}

func (r *WorkersReply) version() int { return r.V }

// Heartbeat announces a worker until ctx is cancelled, then removes its
// entry. status is called for each beat; Heartbeat fills in LastSeen, MBps
// and the version field (the build's, pkg/version). It waits for the bucket (the coordinator creates
// it) and logs nothing: a missed beat only delays the fleet view.
func Heartbeat(ctx context.Context, js jetstream.JetStream, status func() WorkerStatus) {
	var (
		kv       jetstream.KeyValue
		interval = DefaultWorkerTTL / 3
		lastAt   time.Time
		lastB    int64
	)
	key := ""
	for {
		if kv == nil {
			if b, err := js.KeyValue(ctx, BucketWorkers); err == nil {
				kv = b
				if st, err := b.Status(ctx); err == nil && st.TTL() > 0 {
					interval = st.TTL() / 3
				}
			}
		}
		if kv != nil {
			s := status()
			now := time.Now().UTC()
			s.V, s.LastSeen, s.Version = MessageVersion, now, version.Version
			if !lastAt.IsZero() {
				s.MBps = float64(s.Bytes-lastB) / 1e6 / now.Sub(lastAt).Seconds()
			}
			lastAt, lastB, key = now, s.Bytes, s.Role+"."+s.ID
			_, _ = kv.Put(ctx, key, Encode(&s))
		}
		// Until the bucket is there (a worker started before the
		// coordinator), look again every second: a reader is restorable
		// to only once it has announced itself (its host key).
		wait := interval
		if kv == nil {
			wait = min(interval, bucketRetry)
		}
		select {
		case <-ctx.Done():
			if kv != nil && key != "" {
				delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = kv.Delete(delCtx, key)
				cancel()
			}
			return
		case <-time.After(wait):
		}
	}
}

// bucketRetry is how often Heartbeat looks for the workers' bucket while
// it is not there yet.
const bucketRetry = time.Second

// ListWorkers returns the live workers in the bucket.
func ListWorkers(ctx context.Context, js jetstream.JetStream) ([]WorkerStatus, error) {
	kv, err := js.KeyValue(ctx, BucketWorkers)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	workers := []WorkerStatus{}
	for key := range lister.Keys() {
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("workers: %w", err)
		}
		var w WorkerStatus
		if Decode(entry.Value(), &w) == nil {
			workers = append(workers, w)
		}
	}
	return workers, nil
}
