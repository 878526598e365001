package reader

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/restore"
)

// handleRestore registers the handlers of the restore steps.
func (r *Reader) handleRestore(mux *queue.Mux) {
	queue.HandleOp(mux, queue.OpPrepare, r.prepare)
	queue.HandleOp(mux, queue.OpChunk, r.writeChunk)
	queue.HandleOp(mux, queue.OpFinish, r.finish)
	queue.HandleOp(mux, queue.OpAbort, r.abort)
	queue.HandleOp(mux, queue.OpExtents, r.writeExtents)
	for _, op := range []string{queue.OpEntries, queue.OpMetadata, queue.OpLinks, queue.OpDirs} {
		queue.HandleOp(mux, op, func(ctx context.Context, msg jetstream.Msg, item *queue.TreeEntries) error {
			return r.treeStep(ctx, op, item)
		})
	}
}

// stepFailed ends a restore step that failed: a permanent failure is
// recorded (it fails the job, naming the cause); anything else is returned,
// so the step is retried (the repository may be briefly unreachable).
func (r *Reader) stepFailed(ctx context.Context, op string, s *queue.Step, err error) error {
	code, permanent := codeOf(err)
	if !permanent {
		return err
	}
	return r.fail(ctx, &queue.WorkFailed{JobID: s.JobID, Op: op, Target: s.Target, Index: s.Index, Code: code, Message: err.Error()})
}

func volumeTarget(s *queue.Step, size int64, overwrite bool, keep []string, mode *uint32) restore.Target {
	return restore.Target{Path: s.Path, JobID: s.JobID, Size: size, Overwrite: overwrite, Keep: keep, Mode: mode}
}

func (r *Reader) prepare(ctx context.Context, _ jetstream.Msg, item *queue.PrepareVolume) error {
	v, err := restore.Prepare(volumeTarget(&item.Step, item.Size, item.Overwrite, item.Keep, item.FileMode))
	if err != nil {
		return r.stepFailed(ctx, queue.OpPrepare, &item.Step, err)
	}
	r.volumes.put(item.JobID, item.Target, v)
	return r.stepDone(ctx, &queue.StepDone{JobID: item.JobID, Op: queue.OpPrepare, Target: item.Target, Index: item.Index, Device: v.Device()})
}

func (r *Reader) writeChunk(ctx context.Context, _ jetstream.Msg, item *queue.WriteChunk) error {
	c := restore.Chunk{Offset: item.Offset, Length: item.Length, Zero: item.Zero}
	if !item.Zero {
		id, err := chunk.ParseID(item.Hash)
		if err != nil {
			return r.stepFailed(ctx, queue.OpChunk, &item.Step, queue.Failed(queue.CodeInvalid, "chunk %d: %v", item.Index, err))
		}
		c.ID = id
	}
	repo, err := r.restoreRepo(ctx, item.Repo, item.JobID)
	if err != nil {
		return r.stepFailed(ctx, queue.OpChunk, &item.Step, err)
	}
	v, err := r.volumes.get(item.JobID, item.Target, volumeTarget(&item.Step, item.Size, false, nil, nil))
	if err != nil {
		return r.stepFailed(ctx, queue.OpChunk, &item.Step, err)
	}
	m := r.cfg.Metrics
	defer m.Begin("write")()
	start := time.Now()
	buf := r.buffer(item.Length)[:0]
	buf, err = v.WriteChunk(ctx, repo, c, buf)
	r.release(buf)
	m.Stage("write", start)
	if err != nil {
		m.Error("write")
		return r.stepFailed(ctx, queue.OpChunk, &item.Step, err)
	}
	m.Chunk("written", item.Length)
	r.bytes.Add(item.Length)
	return r.stepDone(ctx, &queue.StepDone{JobID: item.JobID, Op: queue.OpChunk, Target: item.Target, Index: item.Index, Length: item.Length})
}

func (r *Reader) finish(ctx context.Context, _ jetstream.Msg, item *queue.FinishVolume) error {
	var err error
	if v := r.volumes.take(item.JobID, item.Target); v != nil {
		err = v.Finish()
	} else {
		err = restore.Finish(volumeTarget(&item.Step, item.Size, item.Overwrite, nil, item.FileMode))
	}
	if err != nil {
		// Whatever went wrong, finishing again will not go better.
		code, _ := codeOf(err)
		return r.fail(ctx, &queue.WorkFailed{JobID: item.JobID, Op: queue.OpFinish, Target: item.Target, Code: code, Message: err.Error()})
	}
	return r.stepDone(ctx, &queue.StepDone{JobID: item.JobID, Op: queue.OpFinish, Target: item.Target, Index: item.Index})
}

// abort removes what a failed restore left on a target, and reports it done
// so the coordinator knows the target is clean before it ends the job. An
// error here is logged and fails nothing more.
func (r *Reader) abort(ctx context.Context, _ jetstream.Msg, item *queue.AbortRestore) error {
	var err error
	if item.Tree {
		err = restore.Tree{Path: item.Path, JobID: item.JobID}.Abort()
	} else {
		if v := r.volumes.take(item.JobID, item.Target); v != nil {
			v.Close()
		}
		err = restore.Abort(restore.Target{Path: item.Path, JobID: item.JobID})
	}
	if err != nil {
		r.logger.WarnContext(ctx, "abort restore", "job_id", item.JobID, "err", err)
	}
	return r.stepDone(ctx, &queue.StepDone{JobID: item.JobID, Op: queue.OpAbort, Target: item.Target, Index: item.Index})
}

// treeStep performs one of the entry steps of a tree restore.
func (r *Reader) treeStep(ctx context.Context, op string, item *queue.TreeEntries) error {
	t := restore.Tree{Path: item.Path, JobID: item.JobID, Overwrite: item.Overwrite, Keep: item.Keep}
	var err error
	switch op {
	case queue.OpEntries:
		err = t.CreateEntries(item.Entries)
	case queue.OpMetadata:
		err = t.SetMetadata(item.Entries)
	case queue.OpLinks:
		err = t.MakeLinks(item.Entries)
	case queue.OpDirs:
		err = t.SetDirs(item.Entries)
	}
	if err != nil {
		return r.stepFailed(ctx, op, &item.Step, err)
	}
	return r.stepDone(ctx, &queue.StepDone{JobID: item.JobID, Op: op, Target: item.Target, Index: item.Index})
}

// writeExtents fetches, checks and writes one chunk of a tree restore.
func (r *Reader) writeExtents(ctx context.Context, _ jetstream.Msg, item *queue.WriteExtents) error {
	id, err := chunk.ParseID(item.Hash)
	if err != nil {
		return r.stepFailed(ctx, queue.OpExtents, &item.Step, queue.Failed(queue.CodeInvalid, "chunk %d: %v", item.Index, err))
	}
	repo, err := r.restoreRepo(ctx, item.Repo, item.JobID)
	if err != nil {
		return r.stepFailed(ctx, queue.OpExtents, &item.Step, err)
	}
	t := restore.Tree{Path: item.Path, JobID: item.JobID, Overwrite: item.Overwrite}
	m := r.cfg.Metrics
	defer m.Begin("write")()
	start := time.Now()
	buf := r.buffer(item.Length)[:0]
	buf, err = t.WriteExtents(ctx, repo, id, item.Length, item.Parts, buf)
	r.release(buf)
	m.Stage("write", start)
	if err != nil {
		m.Error("write")
		return r.stepFailed(ctx, queue.OpExtents, &item.Step, err)
	}
	var written int64 // progress counts the file bytes written
	for _, p := range item.Parts {
		written += p.Length
	}
	m.Chunk("written", item.Length)
	r.bytes.Add(item.Length)
	return r.stepDone(ctx, &queue.StepDone{JobID: item.JobID, Op: queue.OpExtents, Target: item.Target, Index: item.Index, Length: written})
}
