package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Submit publishes a request on subject into StreamRequests. jobID, when
// set, deduplicates repeated submissions of the same job.
func Submit(ctx context.Context, js jetstream.JetStream, subject string, req any, jobID string) error {
	var opts []jetstream.PublishOpt
	if jobID != "" {
		opts = append(opts, jetstream.WithMsgID(jobID))
	}
	if _, err := js.Publish(ctx, subject, Encode(req), opts...); err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return fmt.Errorf("submit on %s: no coordinator has set up the streams (is a coordinator running?): %w", subject, err)
		}
		return fmt.Errorf("submit on %s: %w", subject, err)
	}
	return nil
}

// Follow calls fn with each event of job jobID, from the first, until one
// with a final state, which it returns.
func Follow(ctx context.Context, js jetstream.JetStream, jobID string, fn func(*Event)) (*Event, error) {
	cons, err := js.OrderedConsumer(ctx, StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{EventSubject(jobID)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("follow job %s: %w", jobID, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow job %s: %w", jobID, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
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
