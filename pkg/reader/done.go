package reader

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/restore"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
)

// publish records a completion of kind for jobID, deduplicated by msgID.
func (r *Reader) publish(ctx context.Context, kind, jobID string, v any, msgID string) error {
	if _, err := r.js.Publish(ctx, queue.DoneSubject(jobID, kind), queue.Encode(v), jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %s completion: %w", kind, err)
	}
	return nil
}

// chunkDone records a backup chunk done here: all zeros, or unchanged.
func (r *Reader) chunkDone(ctx context.Context, d *queue.ChunkDone) error {
	d.V, d.Worker = queue.WorkVersion, "reader@"+r.cfg.Host
	return r.publish(ctx, queue.DoneChunk, d.JobID, d, queue.ChunkDoneMsgID(d))
}

// stepDone records a restore step done.
func (r *Reader) stepDone(ctx context.Context, d *queue.StepDone) error {
	d.V, d.Worker = queue.WorkVersion, "reader@"+r.cfg.Host
	return r.publish(ctx, queue.DoneStep, d.JobID, d, queue.StepDoneMsgID(d))
}

// fail records work that cannot succeed by retrying; the coordinator fails
// the job when it sees it.
func (r *Reader) fail(ctx context.Context, d *queue.WorkFailed) error {
	d.V, d.Worker = queue.WorkVersion, "reader@"+r.cfg.Host
	r.logger.ErrorContext(ctx, "work failed", "job_id", d.JobID, "op", d.Op, "index", d.Index, "code", d.Code, "err", d.Message)
	return r.publish(ctx, queue.DoneFailed, d.JobID, d, queue.WorkFailedMsgID(d))
}

// codeOf classifies an error of a restore step, for the WorkFailed that
// reports it; retryable reports whether it is worth trying again instead.
func codeOf(err error) (code queue.Code, permanent bool) {
	var f *queue.Failure
	switch {
	case errors.As(err, &f):
		return f.Code, true
	case errors.Is(err, chunk.ErrCorrupt):
		return queue.CodeCorrupt, true
	case errors.Is(err, store.ErrNotFound):
		return queue.CodeMissing, true
	case errors.Is(err, restore.ErrUnsafePath):
		return queue.CodeUnsafe, true
	case errors.Is(err, restore.ErrExists), errors.Is(err, restore.ErrNotDir), errors.Is(err, restore.ErrNotFile), errors.Is(err, restore.ErrNoRoom):
		return queue.CodeTarget, true
	case errors.Is(err, store.ErrNoSpace), errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT), errors.Is(err, unix.EFBIG):
		return queue.CodeNoSpace, true
	case errors.Is(err, store.ErrAccessDenied), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.EROFS):
		return queue.CodeDenied, true
	case errors.Is(err, retry.ErrUnavailable):
		return queue.CodeUnavailable, true
	case queue.IsPermanent(err), restore.Permanent(err):
		return queue.CodeFailed, true
	}
	return queue.CodeFailed, false
}
