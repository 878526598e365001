package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Submit publishes a request on subject into StreamRequests. jobID, when
// set, deduplicates repeated submissions of the same request: the message
// ID is the job ID and a digest of the request, so that a retried publish
// is stored once while a different request under the same job ID still
// reaches the coordinator, which refuses it as a conflict.
func Submit(ctx context.Context, js jetstream.JetStream, subject string, req any, jobID string) error {
	data := Encode(req)
	var opts []jetstream.PublishOpt
	if jobID != "" {
		opts = append(opts, jetstream.WithMsgID(RequestMsgID(jobID, data)))
	}
	if _, err := js.Publish(ctx, subject, data, opts...); err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return fmt.Errorf("submit on %s: no coordinator has set up the streams (is a coordinator running?): %w", subject, err)
		}
		return fmt.Errorf("submit on %s: %w", subject, err)
	}
	return nil
}

// RequestMsgID is the deduplication ID Submit gives a request of job jobID:
// the job ID and the first 16 hex digits of the SHA-256 of the request.
func RequestMsgID(jobID string, data []byte) string {
	sum := sha256.Sum256(data)
	return jobID + "." + hex.EncodeToString(sum[:8])
}

// Follow calls fn with each event of job jobID, from the first, until one
// with a final state, which it returns. The job's record is the truth and
// its events are notifications: should the event of its end be lost (its
// stream without a leader when it was published, the coordinator killed
// between the two), Follow returns the end as the record says, once the
// record has said it for recordGrace with no event saying so.
func Follow(ctx context.Context, js jetstream.JetStream, jobID string, fn func(*Event)) (*Event, error) {
	it, err := NewTail(ctx, js, StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{EventSubject(jobID)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("follow job %s: %w", jobID, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var ended atomic.Pointer[Event] // the end as the record says it
	watchCtx, endWatch := context.WithCancel(ctx)
	defer endWatch()
	go watchRecord(watchCtx, js, jobID, func(ev *Event) {
		ended.Store(ev)
		it.Stop()
	})
	for {
		msg, err := it.Next(ctx)
		if err != nil {
			if ev := ended.Load(); ev != nil {
				if fn != nil {
					fn(ev)
				}
				return ev, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("follow job %s: %w", jobID, err)
		}
		var ev Event
		if err := Decode(msg.Data(), &ev); err != nil {
			continue
		}
		if fn != nil {
			fn(&ev)
		}
		if Final(ev.State) {
			return &ev, nil
		}
	}
}

// watchRecord reads job jobID's record every recordGrace until ctx ends,
// and calls ended with the event of its end once the record has said the
// job ended at two reads in a row: by then its final event, if it was
// published, has long been delivered.
func watchRecord(ctx context.Context, js jetstream.JetStream, jobID string, ended func(*Event)) {
	tick := time.NewTicker(recordGrace)
	defer tick.Stop()
	var kv jetstream.KeyValue
	seenEnded := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if kv == nil {
			var err error
			if kv, err = js.KeyValue(ctx, BucketJobs); err != nil {
				kv = nil
				continue // no coordinator yet, or the cluster is electing
			}
		}
		entry, err := kv.Get(ctx, jobID)
		if err != nil {
			continue
		}
		var job Job
		if Decode(entry.Value(), &job) != nil || !Final(job.State) {
			continue
		}
		if seenEnded {
			ended(job.Event(""))
			return
		}
		seenEnded = true
	}
}

// recordGrace is how often Follow reads a job's record, in case the event
// of its end was lost.
const recordGrace = 5 * time.Second

// orderedAttempt bounds one attempt to create an ordered consumer. In a
// cluster that has just lost a node, JetStream may place the consumer on
// that node until it is seen to be gone (about ten seconds), and the
// request is never answered; a new attempt lands on a live node.
const orderedAttempt = 5 * time.Second

// OrderedConsumer creates an ordered consumer on stream like
// js.OrderedConsumer, but gives up on an attempt the cluster does not
// answer within a few seconds and tries again, until ctx is done.
func OrderedConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, orderedAttempt)
		cons, err := js.OrderedConsumer(attemptCtx, stream, cfg)
		cancel()
		var apiErr *jetstream.APIError
		unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, nats.ErrNoResponders) || errors.As(err, &apiErr) && apiErr.Code == 503
		if err == nil || ctx.Err() != nil || !unanswered {
			return cons, err
		}
		select { // the cluster is electing or has lost a node: a moment
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
