package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler processes one message. Its result decides the acknowledgement:
// nil acks (so return nil only once the work is durable), an error made by
// Permanent terminates the message, one made by RetryAfter naks it with that
// delay, and any other error naks it with a backoff growing with the number
// of deliveries. A handler with work that must wait until the message can no
// longer be redelivered may acknowledge it itself (msg.DoubleAck) and return
// nil; the loop then leaves it. Handle must honour ctx's cancellation.
type Handler interface {
	Handle(ctx context.Context, msg jetstream.Msg) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, msg jetstream.Msg) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, msg jetstream.Msg) error { return f(ctx, msg) }

type permanentError struct {
	err      error
	obsolete bool
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix; the message is
// terminated rather than redelivered.
func Permanent(err error) error { return &permanentError{err: err} }

// Obsolete marks err as saying that the message is no longer wanted: its
// job has ended (cancelled, or failed elsewhere). The message is terminated
// as for Permanent (IsPermanent holds), but nothing went wrong: it is
// logged at info, not as an error.
func Obsolete(err error) error { return &permanentError{err: err, obsolete: true} }

// IsObsolete reports whether err was marked by Obsolete.
func IsObsolete(err error) bool {
	var p *permanentError
	return errors.As(err, &p) && p.obsolete
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type retryError struct {
	err   error
	delay time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// RetryAfter asks for the message to be redelivered after delay.
func RetryAfter(delay time.Duration, err error) error { return &retryError{err: err, delay: delay} }

// ConsumeConfig tunes Consume.
type ConsumeConfig struct {
	// Workers is how many messages are handled at once; 0 means 1.
	Workers int
	// Prefetch is how many messages are pulled ahead of the workers, so
	// they never wait for a fetch; 0 means Workers.
	Prefetch int
	// DrainTimeout is how long in-flight handlers may run on after ctx is
	// cancelled before their own contexts are cancelled; 0 means 30s.
	DrainTimeout time.Duration
	// MaxBackoff caps the redelivery delay of failed messages; 0 means 30s.
	MaxBackoff time.Duration
	// Logger receives one line per failed message; nil discards.
	Logger *slog.Logger
	// OnIdle, when set, is called whenever a worker finishes a message.
	OnIdle func()
	// OnRetry, when set, is called with "error" or "retry_after" whenever a
	// message is handed back for redelivery, and with "permanent" when one
	// is given up on (for metrics).
	OnRetry func(reason string)
	// Conn, when set, is the connection the consumer pulls over: when it
	// reconnects (the server restarted, or the client moved to another
	// node) Consume returns ErrReconnected, so that Serve binds the
	// consumer afresh. A pull iterator carried across a server restart
	// can otherwise wait for messages forever while heartbeats still come.
	Conn *nats.Conn
}

// ErrReconnected is returned by Consume when ConsumeConfig.Conn reconnected
// under it.
var ErrReconnected = errors.New("consume: the connection reconnected")

// reconnectPoll is how often Consume looks for a reconnect.
const reconnectPoll = time.Second

// Consume pulls messages from cons and hands them to h on cfg.Workers
// goroutines until ctx is cancelled. Then it stops pulling, lets in-flight
// handlers finish (up to DrainTimeout), naks what was pulled but not started
// so another worker takes it at once, and returns nil.
func Consume(ctx context.Context, cons jetstream.Consumer, h Handler, cfg ConsumeConfig) error {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = cfg.Workers
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Prefetch), jetstream.PullExpiry(5*time.Second),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}

	// Handlers run on a context that outlives ctx by DrainTimeout.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() {
		it.Drain() // not Stop: messages already pulled come out of Next, to be naked
		time.AfterFunc(cfg.DrainTimeout, cancelWork)
	})
	defer stopDrain()

	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for msg := range msgs {
				if ctx.Err() != nil {
					_ = msg.Nak()
					continue
				}
				settle(workCtx, msg, h.Handle(workCtx, msg), cfg, logger)
				if cfg.OnIdle != nil {
					cfg.OnIdle()
				}
			}
		})
	}
	var reconnected atomic.Bool
	if nc := cfg.Conn; nc != nil {
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go func() {
			start := nc.Stats().Reconnects
			tick := time.NewTicker(reconnectPoll)
			defer tick.Stop()
			for {
				select {
				case <-watchCtx.Done():
					return
				case <-tick.C:
				}
				if nc.Stats().Reconnects != start {
					reconnected.Store(true)
					it.Drain() // what was pulled still comes out, to be naked
					return
				}
			}
		}()
	}
	var loopErr error
	// Messages pulled but not started when ctx ends are naked only once the
	// iterator is drained: naked while it still has pull requests open, they
	// would come straight back to it and be lost until AckWait.
	var unstarted []jetstream.Msg
	for {
		msg, err := it.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() == nil {
				loopErr = fmt.Errorf("consume: %w", err)
			}
			break
		}
		if ctx.Err() != nil || reconnected.Load() {
			unstarted = append(unstarted, msg)
			continue
		}
		select {
		case msgs <- msg:
		case <-ctx.Done():
			unstarted = append(unstarted, msg)
		}
	}
	close(msgs)
	for _, msg := range unstarted {
		_ = msg.Nak()
	}
	wg.Wait()
	if loopErr == nil && reconnected.Load() && ctx.Err() == nil {
		loopErr = ErrReconnected
	}
	return loopErr
}

func settle(ctx context.Context, msg jetstream.Msg, err error, cfg ConsumeConfig, logger *slog.Logger) {
	if err == nil {
		if ackErr := msg.Ack(); ackErr != nil && !errors.Is(ackErr, jetstream.ErrMsgAlreadyAckd) {
			logger.WarnContext(ctx, "ack", "subject", msg.Subject(), "err", ackErr)
		}
		return
	}
	attempt := uint64(1)
	if md, mdErr := msg.Metadata(); mdErr == nil {
		attempt = md.NumDelivered
	}
	var retry *retryError
	reason := "error"
	switch {
	case IsObsolete(err):
		logger.InfoContext(ctx, "dropping a message of an ended job", "job_id", JobOfSubject(msg.Subject()),
			"subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason(err.Error())
		return
	case IsPermanent(err):
		reason = "permanent"
		logger.ErrorContext(ctx, "giving up on message", "job_id", JobOfSubject(msg.Subject()),
			"subject", msg.Subject(), "attempt", attempt, "err", err)
		_ = msg.TermWithReason(err.Error())
	case errors.As(err, &retry):
		reason = "retry_after"
		logger.DebugContext(ctx, "message retried later", "subject", msg.Subject(), "attempt", attempt, "err", err)
		_ = msg.NakWithDelay(retry.delay)
	default:
		delay := min(cfg.MaxBackoff, time.Duration(1<<min(attempt, 10))*100*time.Millisecond)
		logger.WarnContext(ctx, "message failed; will retry", "job_id", JobOfSubject(msg.Subject()),
			"subject", msg.Subject(), "attempt", attempt, "err", err)
		_ = msg.NakWithDelay(delay)
	}
	if cfg.OnRetry != nil {
		cfg.OnRetry(reason)
	}
}

// JobOfSubject returns the job a work item or chunk descriptor belongs to
// (the last token of bulk.work.<op>.<host>.<job> and bulk.ready.<job>), or
// "" for other subjects.
func JobOfSubject(subject string) string {
	if !strings.HasPrefix(subject, "bulk.work.") && !strings.HasPrefix(subject, "bulk.ready.") {
		return ""
	}
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// Serve binds the durable consumer cc on stream and runs Consume until ctx
// is cancelled. It waits for the stream to exist (the coordinator creates
// it), and when consuming fails (a NATS restart lost a memory stream, the
// consumer was deleted, heartbeats stopped) it binds the consumer again, so
// a service outlives the servers it talks to.
func Serve(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig, h Handler, cfg ConsumeConfig) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	waiting := false
	for ctx.Err() == nil {
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
		if err == nil {
			waiting = false
			cfg.Conn = js.Conn()
			err = Consume(ctx, cons, h, cfg)
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, ErrReconnected) {
			logger.InfoContext(ctx, "reconnected; binding the consumer again", "stream", stream, "consumer", cc.Durable)
			continue
		}
		if !waiting {
			logger.WarnContext(ctx, "consumer unavailable; retrying", "stream", stream, "consumer", cc.Durable, "err", err)
			waiting = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
