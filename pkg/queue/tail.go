package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// tailExpiry is how long one pull request of a Tail waits; the server sends
// heartbeats at half this, so a consumer lost with its node is noticed
// within about this long.
const tailExpiry = 5 * time.Second

// Tail reads the messages of a stream in order, through an ordered
// consumer, and outlives the consumer: when it fails (in a cluster, its
// node died and recreating it under the same name goes unanswered), Tail
// follows on with a new ordered consumer from the message after the last
// one it returned. Next and Stop may be called from different goroutines.
type Tail struct {
	js     jetstream.JetStream
	stream string
	cfg    jetstream.OrderedConsumerConfig

	mu      sync.Mutex
	cons    jetstream.Consumer
	it      jetstream.MessagesContext
	stopped bool
	stopc   chan struct{} // closed by Stop
	last    uint64        // stream sequence of the last message Next returned
	backlog uint64        // messages there when the tail started (Backlog)
}

// NewTail starts reading stream as cfg describes.
func NewTail(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig) (*Tail, error) {
	// One reset attempt that fails hands the failure to Next, which starts
	// over under a new name, rather than retrying the lost one forever.
	cfg.MaxResetAttempts = 1
	t := &Tail{js: js, stream: stream, cfg: cfg, stopc: make(chan struct{})}
	if err := t.open(ctx, cfg); err != nil {
		return nil, err
	}
	// The consumer's info from its creation says how many messages were
	// there then; asked later, NumPending leaves out those its iterator
	// has already pulled, however few Next has returned.
	info := t.cons.CachedInfo()
	if info == nil {
		var err error
		if info, err = t.cons.Info(ctx); err != nil {
			t.Stop()
			return nil, err
		}
	}
	t.backlog = info.NumPending
	return t, nil
}

// Backlog returns how many messages the stream held for the tail when it
// started: a replay reads that many before going on.
func (t *Tail) Backlog() uint64 { return t.backlog }

func (t *Tail) open(ctx context.Context, cfg jetstream.OrderedConsumerConfig) error {
	cons, err := OrderedConsumer(ctx, t.js, t.stream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullExpiry(tailExpiry))
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		it.Stop()
		return jetstream.ErrMsgIteratorClosed
	}
	t.cons, t.it = cons, it
	return nil
}

// Next returns the next message. It fails with
// jetstream.ErrMsgIteratorClosed after Stop, with ctx's error when ctx is
// done while it starts over, and otherwise only when the stream or the
// connection is gone for good (see reopen).
func (t *Tail) Next(ctx context.Context) (jetstream.Msg, error) {
	for {
		t.mu.Lock()
		it, stopped := t.it, t.stopped
		t.mu.Unlock()
		if stopped {
			return nil, jetstream.ErrMsgIteratorClosed
		}
		msg, err := it.Next()
		if err == nil {
			if md, mdErr := msg.Metadata(); mdErr == nil {
				t.mu.Lock()
				t.last = md.Sequence.Stream
				t.mu.Unlock()
			}
			return msg, nil
		}
		t.mu.Lock()
		stopped, last := t.stopped, t.last
		t.mu.Unlock()
		if stopped {
			return nil, jetstream.ErrMsgIteratorClosed
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		it.Stop()
		cfg := t.cfg
		if last > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, last+1, nil
		}
		if err := t.reopen(ctx, cfg); err != nil {
			return nil, err
		}
	}
}

// reopen opens the tail again after its consumer failed. The tail opened
// once with this configuration, so a failure now is the cluster's, not
// the request's (a node died, a leader is being elected, the consumer
// could not be placed yet), and it tries again, backing off, until it
// opens, ctx ends, Stop is called, or the stream or the connection is gone
// for good. Giving up sooner would leave the reader without its messages
// while the stream goes on.
func (t *Tail) reopen(ctx context.Context, cfg jetstream.OrderedConsumerConfig) error {
	wait := reopenFirst
	for {
		err := t.open(ctx, cfg)
		if err == nil || !reopenable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last failure: %v)", ctx.Err(), err)
		case <-t.stopc:
			return jetstream.ErrMsgIteratorClosed
		case <-time.After(wait):
		}
		wait = min(2*wait, reopenMax)
	}
}

// Bounds of the pause between attempts to reopen a tail.
const (
	reopenFirst = 200 * time.Millisecond
	reopenMax   = 5 * time.Second
)

// reopenable reports whether a tail that failed to open with err may
// open later: not when it was stopped, its stream was deleted, or its
// connection was closed. A timeout is worth another attempt: it is one
// request's, and the caller's context is looked at apart.
func reopenable(err error) bool {
	return !errors.Is(err, jetstream.ErrMsgIteratorClosed) && !errors.Is(err, jetstream.ErrStreamNotFound) &&
		!errors.Is(err, nats.ErrConnectionClosed)
}

// Stop ends the reading; a Next in progress returns
// jetstream.ErrMsgIteratorClosed.
func (t *Tail) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		close(t.stopc)
	}
	t.stopped = true
	if t.it != nil {
		t.it.Stop()
	}
}
