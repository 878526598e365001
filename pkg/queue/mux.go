package queue

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// versioned is a message this package decodes.
type versioned interface{ version() int }

// Mux routes the messages of one consumer to a typed handler per
// operation, in the manner of net/http's ServeMux: the operation is a token
// of the message's subject, and the body decodes strictly into the type
// its handler takes. A message of an unknown operation, or that does not
// decode, is terminated (Permanent): no redelivery can fix it.
type Mux struct {
	token    int
	handlers map[string]func(ctx context.Context, msg jetstream.Msg) error
}

var _ Handler = (*Mux)(nil)

// NewMux returns a Mux that reads the operation from the subject's token
// number token (0-based: 2 for bulk.work.<op>.<host>.<job>).
func NewMux(token int) *Mux {
	return &Mux{token: token, handlers: make(map[string]func(context.Context, jetstream.Msg) error)}
}

// HandleOp registers h for the messages of op, decoded into a *T. It panics
// when op is registered twice: a wiring bug.
func HandleOp[T any, P interface {
	*T
	versioned
}](m *Mux, op string, h func(ctx context.Context, msg jetstream.Msg, item P) error) {
	if _, ok := m.handlers[op]; ok {
		panic(fmt.Sprintf("queue: operation %q registered twice", op))
	}
	m.handlers[op] = func(ctx context.Context, msg jetstream.Msg) error {
		item := P(new(T))
		if err := Decode(msg.Data(), item); err != nil {
			return Permanent(fmt.Errorf("%s on %s: %w", op, msg.Subject(), err))
		}
		return h(ctx, msg, item)
	}
}

// Handle decodes msg for the handler of its operation and calls it.
func (m *Mux) Handle(ctx context.Context, msg jetstream.Msg) error {
	tokens := strings.Split(msg.Subject(), ".")
	if m.token >= len(tokens) {
		return Permanent(fmt.Errorf("subject %s names no operation", msg.Subject()))
	}
	h, ok := m.handlers[tokens[m.token]]
	if !ok {
		return Permanent(fmt.Errorf("unknown operation %q on %s", tokens[m.token], msg.Subject()))
	}
	return h(ctx, msg)
}

// DecodeDone decodes a completion, whose kind is the last token of its
// subject: it returns a *ChunkDone, *ScanBatch, *ScanDone, *FileProblems,
// *StepDone, *WorkFailed, or a task's *CondemnDone, *SweepDone,
// *CheckDone or *TaskAlive.
func DecodeDone(subject string, data []byte) (any, error) {
	kind := subject[strings.LastIndexByte(subject, '.')+1:]
	var v versioned
	switch kind {
	case DoneChunk:
		v = new(ChunkDone)
	case DoneScanPart:
		v = new(ScanBatch)
	case DoneScan:
		v = new(ScanDone)
	case DoneProblems:
		v = new(FileProblems)
	case DoneStep:
		v = new(StepDone)
	case DoneFailed:
		v = new(WorkFailed)
	case DoneCondemned:
		v = new(CondemnDone)
	case DoneSwept:
		v = new(SweepDone)
	case DoneChecked:
		v = new(CheckDone)
	case DoneAlive:
		v = new(TaskAlive)
	default:
		return nil, fmt.Errorf("%w: unknown completion kind %q on %s", ErrBadMessage, kind, subject)
	}
	if err := Decode(data, v); err != nil {
		return nil, err
	}
	if b, ok := v.(*ScanBatch); ok && (b.Count < 1 || b.Count > maxScanBatchEntries || len(b.Packed) == 0) {
		return nil, fmt.Errorf("%w: scan batch of %d entries in %d bytes", ErrBadMessage, b.Count, len(b.Packed))
	}
	return v, nil
}
