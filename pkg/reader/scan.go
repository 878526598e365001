package reader

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// scanBatchBytes bounds the encoded entries of one scan batch, well inside
// a NATS message.
const scanBatchBytes = 256 << 10

// handleScan lists a tree and reports it in batches, then how many batches
// the scan sent. A scan that fails (the root is gone or not a directory)
// fails the job; single entries that cannot be read are part of the
// listing.
func (r *Reader) handleScan(ctx context.Context, msg jetstream.Msg, item *queue.ScanTree) error {
	var (
		batch    []manifest.Entry
		bytes    int
		batches  int
		warnings []string
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		d := queue.NewScanBatch(item.JobID, item.Attempt, batches, batch)
		if err := r.publish(ctx, queue.DoneScanPart, item.JobID, d, queue.ScanBatchMsgID(d)); err != nil {
			return &publishError{err}
		}
		batches++
		batch, bytes = nil, 0
		_ = msg.InProgress() // a large tree takes longer than the ack wait
		return nil
	}
	emit := func(e manifest.Entry) error {
		batch = append(batch, e)
		bytes += 160 + len(e.Path) + len(e.Target) + len(e.LinkTo) + len(e.Warning)
		r.bytes.Add(1)
		if bytes >= scanBatchBytes {
			return flush()
		}
		return nil
	}
	warn := func(w string) {
		if len(warnings) < queue.MaxWarnings {
			warnings = append(warnings, w)
		}
	}
	opts, err := scanOptions(item)
	if err != nil {
		return r.fail(ctx, &queue.WorkFailed{JobID: item.JobID, Op: queue.OpScan, Code: queue.CodeInvalid, Message: err.Error()})
	}
	res, err := source.ScanTreeWith(ctx, item.Path, opts, emit, warn)
	if err == nil {
		err = flush()
	}
	var pe *publishError
	if err != nil {
		if ctx.Err() != nil || errors.As(err, &pe) {
			return err // redelivered: the scan runs again
		}
		return r.fail(ctx, &queue.WorkFailed{JobID: item.JobID, Op: queue.OpScan, Code: queue.CodeSource, Message: err.Error()})
	}
	d := &queue.ScanDone{V: queue.WorkVersion, JobID: item.JobID, Attempt: item.Attempt, Batches: batches, Warnings: warnings, Excluded: res.Excluded}
	return r.publish(ctx, queue.DoneScan, item.JobID, d, queue.ScanDoneMsgID(d))
}

// publishError is a failure to record work done, worth retrying, as opposed
// to a failure of the work itself.
type publishError struct{ err error }

func (e *publishError) Error() string { return e.err.Error() }
func (e *publishError) Unwrap() error { return e.err }
