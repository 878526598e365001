package queue_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestTail reads a stream in order, goes on where it was when its
// consumer is lost, and stops when told.
func TestTail(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOG", Subjects: []string{"log.>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if _, err := js.Publish(ctx, "log.a", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = js.Publish(ctx, "log.other", []byte("filtered out"))
	}
	publish(1, 3)
	tail, err := queue.NewTail(ctx, js, "LOG", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"log.a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Stop()
	// What was there when it started, however much its iterator pulled
	// since (asking the consumer now could say less: the old flake).
	time.Sleep(20 * time.Millisecond)
	if got := tail.Backlog(); got != 3 {
		t.Errorf("backlog %d, want 3", got)
	}
	next := func(want int) {
		t.Helper()
		nextCtx, cancel := context.WithTimeout(ctx, testDeadline)
		defer cancel()
		msg, err := tail.Next(nextCtx)
		if err != nil {
			t.Fatalf("next, want %d: %v", want, err)
		}
		if got := string(msg.Data()); got != fmt.Sprint(want) {
			t.Fatalf("got message %q, want %d", got, want)
		}
	}

	for i := 1; i <= 3; i++ {
		next(i)
	}
	// The consumer is lost (as with its node in a cluster).
	for name := range stream.ConsumerNames(ctx).Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	publish(4, 6)
	for i := 4; i <= 6; i++ {
		next(i)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := tail.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Next block; it returns either way
	tail.Stop()
	select {
	case err := <-errc:
		if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			t.Errorf("next after stop: %v, want %v", err, jetstream.ErrMsgIteratorClosed)
		}
	case <-time.After(testDeadline):
		t.Fatal("next did not return after stop")
	}
}
