package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

const (
	testStream   = "TEST"
	testDurable  = "workers"
	testSubject  = "test.work"
	testDeadline = 30 * time.Second // bound on any single wait
)

// newJetStream starts an embedded broker for the test and returns a client.
func newJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	b, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// bundle is a work-queue stream with one durable consumer on it.
type bundle struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	cc     jetstream.ConsumerConfig
	cons   jetstream.Consumer
}

func setup(t *testing.T) *bundle {
	t.Helper()
	js := newJetStream(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: testStream, Subjects: []string{"test.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	cc := jetstream.ConsumerConfig{
		Durable: testDurable, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute, MaxDeliver: -1,
	}
	cons, err := js.CreateOrUpdateConsumer(t.Context(), testStream, cc)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{js: js, stream: stream, cc: cc, cons: cons}
}

func (b *bundle) publish(t *testing.T, data string) {
	t.Helper()
	if _, err := b.js.Publish(t.Context(), testSubject, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

// running is a queue.Consume or queue.Serve running in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when it has returned
	err    error         // its result, once done
}

func start(t *testing.T, what string, run func(ctx context.Context) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx)
		if ctx.Err() == nil {
			t.Errorf("%s returned before it was stopped: %v", what, r.err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testDeadline):
			t.Errorf("%s did not return after its context was cancelled", what)
		}
	})
	return r
}

// wait waits for the run to return and returns its result.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testDeadline):
		t.Fatal("timed out waiting for a return")
		return nil
	}
}

// stop cancels the run and waits for it to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// consume runs queue.Consume on the bundle's consumer until stopped or the
// test ends. Like Serve, it consumes again when Consume fails on its own: on
// a loaded machine the pull iterator can miss a heartbeat, which ends
// Consume with an error by design.
func (b *bundle) consume(t *testing.T, h queue.Handler, cfg queue.ConsumeConfig) *running {
	t.Helper()
	return start(t, "Consume", func(ctx context.Context) error {
		for {
			err := queue.Consume(ctx, b.cons, h, cfg)
			if ctx.Err() != nil {
				return err
			}
			t.Logf("Consume returned before it was stopped (%v); consuming again", err)
		}
	})
}

// waitEmpty polls until the stream holds no message.
func (b *bundle) waitEmpty(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for {
		info, err := b.stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream still holds %d messages after %s", info.State.Msgs, testDeadline)
		}
		time.Sleep(10 * time.Millisecond) // polling, not synchronisation
	}
}

// receive waits for a value on ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testDeadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// delivery is one call of a handler.
type delivery struct {
	data      string
	delivered uint64 // NumDelivered from the metadata
	at        time.Time
}

func record(ch chan<- delivery, msg jetstream.Msg) {
	d := delivery{data: string(msg.Data()), at: time.Now()}
	if md, err := msg.Metadata(); err == nil {
		d.delivered = md.NumDelivered
	}
	ch <- d
}

func TestConsumeAcksOnNil(t *testing.T) {
	t.Parallel()
	b := setup(t)
	calls := make(chan delivery, 10)
	b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		record(calls, msg)
		return nil
	}), queue.ConsumeConfig{})
	b.publish(t, "one")
	b.publish(t, "two")
	for _, want := range []string{"one", "two"} {
		if got := receive(t, calls, "a delivery"); got.data != want || got.delivered != 1 {
			t.Errorf("delivery = %q (delivered %d times), want %q once", got.data, got.delivered, want)
		}
	}
	b.waitEmpty(t) // acked messages leave a work queue
}

// TestConsumeHandlerAcks lets a handler acknowledge its message itself
// (to act once the message can no longer come back): the loop leaves it
// acknowledged, without a warning about acknowledging it again.
func TestConsumeHandlerAcks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var log testenv.LogBuffer
	acked := make(chan error, 1)
	b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		acked <- msg.DoubleAck(ctx)
		return nil
	}), queue.ConsumeConfig{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	b.publish(t, "one")
	if err := receive(t, acked, "the handler's acknowledgement"); err != nil {
		t.Fatalf("DoubleAck: %v", err)
	}
	b.waitEmpty(t)
	b.publish(t, "two") // the loop has settled "one" once "two" is handled
	receive(t, acked, "the second message")
	if strings.Contains(log.String(), "ack") {
		t.Errorf("the loop logged about the acknowledged message:\n%s", log.String())
	}
}

func TestConsumeTerminatesPermanentErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nc := b.js.Conn()
	terminated, err := nc.SubscribeSync(fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.%s.%s", testStream, testDurable))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	handled := make(chan delivery, 10)
	b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		record(handled, msg)
		if string(msg.Data()) == "bad" {
			calls.Add(1)
			return queue.Permanent(errors.New("cannot ever work"))
		}
		return nil
	}), queue.ConsumeConfig{MaxBackoff: time.Millisecond})

	b.publish(t, "bad")
	receive(t, handled, "the bad message")
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	adv, err := terminated.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("no termination advisory: %v", err)
	}
	if !bytes.Contains(adv.Data, []byte("cannot ever work")) {
		t.Errorf("termination advisory %s does not carry the reason", adv.Data)
	}
	b.waitEmpty(t) // a terminated message leaves the work queue: it cannot come back

	// A later message is still handled, and the bad one was handled once.
	b.publish(t, "good")
	if got := receive(t, handled, "the good message"); got.data != "good" {
		t.Errorf("next delivery = %q, want good", got.data)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("permanently failing message handled %d times, want 1", n)
	}
	b.waitEmpty(t) // the good message's ack is processed
	info, err := b.cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.NumAckPending != 0 {
		t.Errorf("consumer: %d redelivered, %d pending acks; want 0, 0", info.NumRedelivered, info.NumAckPending)
	}
}

func TestConsumeRetriesErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	calls := make(chan delivery, 10)
	retries := make(chan string, 10)
	b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		record(calls, msg)
		if md, err := msg.Metadata(); err == nil && md.NumDelivered < 2 {
			return errors.New("transient")
		}
		return nil
	}), queue.ConsumeConfig{MaxBackoff: 10 * time.Millisecond, OnRetry: func(r string) { retries <- r }})
	b.publish(t, "flaky")
	for want := uint64(1); want <= 2; want++ {
		if got := receive(t, calls, fmt.Sprintf("delivery %d", want)); got.data != "flaky" || got.delivered != want {
			t.Errorf("delivery = %q (number %d), want flaky (number %d)", got.data, got.delivered, want)
		}
	}
	b.waitEmpty(t)
	select {
	case d := <-calls:
		t.Errorf("unexpected delivery %d after success", d.delivered)
	default:
	}
	if n := len(retries); n != 1 {
		t.Errorf("OnRetry called %d times, want once", n)
	} else if r := <-retries; r != "error" {
		t.Errorf("OnRetry reason %q, want \"error\"", r)
	}
}

func TestConsumeRetryAfter(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	b := setup(t)
	calls := make(chan delivery, 10)
	b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		record(calls, msg)
		if md, err := msg.Metadata(); err == nil && md.NumDelivered < 2 {
			return queue.RetryAfter(delay, errors.New("busy"))
		}
		return nil
	}), queue.ConsumeConfig{MaxBackoff: time.Millisecond}) // RetryAfter is not capped by MaxBackoff
	b.publish(t, "later")
	first := receive(t, calls, "the first delivery")
	second := receive(t, calls, "the redelivery")
	if second.delivered != 2 {
		t.Errorf("redelivery number = %d, want 2", second.delivered)
	}
	if gap := second.at.Sub(first.at); gap < delay {
		t.Errorf("redelivered after %s, want at least %s", gap, delay)
	}
	b.waitEmpty(t)
}

// TestConsumeDrains cancels Consume while a handler is blocked: the handler
// keeps a live context, finishes, its message is acked, and only then does
// Consume return.
func TestConsumeDrains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{})
	release := make(chan struct{})
	ctxErrAtRelease := make(chan error, 1)
	var finished atomic.Bool
	c := b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		close(started)
		<-release
		ctxErrAtRelease <- ctx.Err()
		finished.Store(true)
		return nil
	}), queue.ConsumeConfig{DrainTimeout: time.Minute})
	b.publish(t, "slow")
	receive(t, started, "the handler to start")

	c.cancel()
	select {
	case <-c.done:
		t.Fatal("Consume returned while a handler was still running")
	default:
	}
	close(release) // after cancel: a handler context tied to ctx would be done by now
	if err := c.wait(t); err != nil {
		t.Errorf("Consume = %v, want nil", err)
	}
	if !finished.Load() {
		t.Error("Consume returned before the handler finished")
	}
	if err := <-ctxErrAtRelease; err != nil {
		t.Errorf("handler context error while draining = %v, want nil", err)
	}
	b.waitEmpty(t) // the drained handler's result was acked
}

// TestConsumeDrainTimeout checks that a handler still running DrainTimeout
// after shutdown began gets its context cancelled, and its message comes
// back.
func TestConsumeDrainTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{}, 1)
	c := b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		started <- struct{}{}
		<-ctx.Done() // a handler that only stops when told
		return ctx.Err()
	}), queue.ConsumeConfig{DrainTimeout: 50 * time.Millisecond})
	b.publish(t, "stuck")
	receive(t, started, "the handler to start")
	if err := c.stop(t); err != nil {
		t.Errorf("Consume = %v, want nil", err)
	}
	info, err := b.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after an interrupted handler, want 1", info.State.Msgs)
	}
}

// TestConsumeNaksPrefetched checks that messages pulled ahead but not yet
// handled when Consume stops are handed back at once, not after AckWait.
func TestConsumeNaksPrefetched(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 5
	for i := range n {
		b.publish(t, fmt.Sprint(i))
	}
	started := make(chan struct{}, n)
	release := make(chan struct{})
	c := b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		started <- struct{}{}
		<-release
		return nil
	}), queue.ConsumeConfig{Workers: 1, Prefetch: n})
	receive(t, started, "the first handler")
	// Wait until the consumer has delivered every message (pulled ahead).
	deadline := time.Now().Add(testDeadline)
	for {
		info, err := b.cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer has %d messages pending, want %d pulled ahead", info.NumAckPending, n)
		}
		time.Sleep(10 * time.Millisecond) // polling, not synchronisation
	}
	c.cancel()
	close(release)
	if err := c.wait(t); err != nil {
		t.Errorf("Consume = %v", err)
	}
	// Another worker gets the unstarted messages at once, long before
	// AckWait would have them redelivered.
	handled := make(chan delivery, n)
	b.consume(t, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		record(handled, msg)
		return nil
	}), queue.ConsumeConfig{})
	got := make(map[string]bool)
	for range n - 1 {
		select {
		case d := <-handled:
			got[d.data] = true
		case <-time.After(b.cc.AckWait / 2):
			t.Fatalf("after stop, %d of %d unstarted messages came back before AckWait/2", len(got), n-1)
		}
	}
	for i := 1; i < n; i++ {
		if !got[fmt.Sprint(i)] {
			t.Errorf("unstarted message %d not handed back (got %v)", i, got)
		}
	}
	b.waitEmpty(t)
}

// serve runs queue.Serve until stopped or the test ends.
func serve(t *testing.T, js jetstream.JetStream, cc jetstream.ConsumerConfig, h queue.Handler) *running {
	t.Helper()
	return start(t, "Serve", func(ctx context.Context) error {
		return queue.Serve(ctx, js, testStream, cc, h, queue.ConsumeConfig{})
	})
}

// TestServeRecreatesConsumer deletes the consumer under a running Serve: it
// binds it again and goes on handling new messages.
func TestServeRecreatesConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	handled := make(chan delivery, 10)
	s := serve(t, b.js, b.cc, queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
		record(handled, msg)
		return nil
	}))
	b.publish(t, "before")
	if got := receive(t, handled, "a message before the deletion"); got.data != "before" {
		t.Fatalf("handled %q, want before", got.data)
	}
	b.waitEmpty(t) // acked: the new consumer must not see it again
	if err := b.js.DeleteConsumer(t.Context(), testStream, testDurable); err != nil {
		t.Fatal(err)
	}
	b.publish(t, "after")
	if got := receive(t, handled, "a message after the deletion"); got.data != "after" {
		t.Fatalf("handled %q, want after", got.data)
	}
	if _, err := b.js.Consumer(t.Context(), testStream, testDurable); err != nil {
		t.Errorf("consumer after Serve recovered: %v", err)
	}
	b.waitEmpty(t)
	if err := s.stop(t); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

// TestServeWaitsForStream starts Serve before its stream exists.
func TestServeWaitsForStream(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	handled := make(chan delivery, 1)
	serve(t, js, jetstream.ConsumerConfig{Durable: testDurable, AckPolicy: jetstream.AckExplicitPolicy},
		queue.HandlerFunc(func(ctx context.Context, msg jetstream.Msg) error {
			record(handled, msg)
			return nil
		}))
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: testStream, Subjects: []string{"test.>"}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), testSubject, []byte("late")); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, handled, "a message on the late stream"); got.data != "late" {
		t.Errorf("handled %q, want late", got.data)
	}
}

func TestSetupIdempotent(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	for i := range 2 {
		if err := queue.Setup(t.Context(), js, queue.StreamConfig{}); err != nil {
			t.Fatalf("Setup #%d: %v", i+1, err)
		}
	}
	want := map[string]jetstream.StorageType{
		queue.StreamRequests: jetstream.FileStorage,
		queue.StreamWork:     jetstream.FileStorage,
		queue.StreamReady:    jetstream.FileStorage,
		queue.StreamDone:     jetstream.FileStorage,
		queue.StreamEvents:   jetstream.FileStorage,
	}
	for name, storage := range want {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if got := s.CachedInfo().Config.Storage; got != storage {
			t.Errorf("stream %s storage = %v, want %v", name, got, storage)
		}
	}
	// Only descriptors enter the ready stream: raw bytes never do.
	ready, err := js.Stream(t.Context(), queue.StreamReady)
	if err != nil {
		t.Fatal(err)
	}
	if got := ready.CachedInfo().Config; got.MaxMsgSize != 1<<20 || got.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("ready stream MaxMsgSize = %d, retention %v; want 1 MiB, work queue", got.MaxMsgSize, got.Retention)
	}
	if _, err := js.KeyValue(t.Context(), queue.BucketJobs); err != nil {
		t.Errorf("bucket %s: %v", queue.BucketJobs, err)
	}
}
