package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/dispatch"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// records are the completions of one job seen so far, the first of each:
// what its manifest is built from, and what a resumed job need not do
// again. They are safe for concurrent use: the completions of a phase are
// recorded while the phase's dispatcher asks what is done.
type records struct {
	mu       sync.Mutex
	chunks   map[int]*queue.ChunkDone
	steps    map[dispatch.Unit]*queue.StepDone
	failed   map[dispatch.Unit]bool
	batches  map[[2]int]*scanBatch // by attempt and batch
	scan     *queue.ScanDone       // the first scan to complete
	tasks    map[dispatch.Unit]any // a maintenance task's completion
	problems []source.FileProblem
	count    int
	// progress counts the chunks and bytes done (Job.Progress).
	progress func(chunks int, bytes int64)
}

func newRecords(progress func(chunks int, bytes int64)) *records {
	return &records{
		chunks: make(map[int]*queue.ChunkDone), steps: make(map[dispatch.Unit]*queue.StepDone),
		failed: make(map[dispatch.Unit]bool), batches: make(map[[2]int]*scanBatch), progress: progress,
		tasks: make(map[dispatch.Unit]any),
	}
}

// add records one completion (a value queue.DecodeDone returns). It
// returns what the phase's dispatcher hears of it, and false when there is
// nothing to hear (a repeat, or news no unit waits for).
func (r *records) add(v any) (dispatch.Completion, bool) {
	// A scan batch is unpacked and packed again as a plan.Scan holds it
	// as it comes, while the scan goes on, and outside the lock.
	var batch *scanBatch
	if d, ok := v.(*queue.ScanBatch); ok {
		batch = &scanBatch{first: "."}
		entries, err := d.Unpack()
		if err == nil && len(entries) > 0 {
			batch.first = entries[0].Path
			batch.entries, err = plan.PackEntries(entries)
		}
		batch.err = err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch d := v.(type) {
	case *queue.ChunkDone:
		if r.chunks[d.Index] != nil {
			return dispatch.Completion{}, false
		}
		r.chunks[d.Index] = d
		r.progress(1, d.Length)
		r.count++
		return dispatch.Completion{Unit: dispatch.Unit{Op: queue.OpRead, Index: d.Index}}, true
	case *queue.StepDone:
		u := dispatch.Unit{Op: d.Op, Target: d.Target, Index: d.Index}
		if r.steps[u] != nil {
			return dispatch.Completion{}, false
		}
		r.steps[u] = d
		if d.Op == queue.OpChunk || d.Op == queue.OpExtents {
			r.progress(1, d.Length)
		}
		r.count++
		return dispatch.Completion{Unit: u}, true
	case *queue.ScanBatch:
		k := [2]int{d.Attempt, d.Batch}
		if r.batches[k] != nil {
			return dispatch.Completion{}, false
		}
		r.batches[k] = batch
		r.count++
		// A scan reports as it goes: a large tree's scan is alive as
		// long as batches come, however long it takes.
		return dispatch.Completion{Unit: dispatch.Unit{Op: queue.OpScan}, Alive: true, Attempt: d.Attempt}, true
	case *queue.ScanDone:
		if r.scan != nil {
			return dispatch.Completion{}, false
		}
		r.scan = d
		r.count++
		return dispatch.Completion{Unit: dispatch.Unit{Op: queue.OpScan}}, true
	case *queue.FileProblems:
		r.problems = append(r.problems, d.Problems...)
		return dispatch.Completion{}, false
	case *queue.CondemnDone:
		return r.task(dispatch.Unit{Op: queue.TaskCondemn, Index: d.Shard}, d)
	case *queue.SweepDone:
		return r.task(dispatch.Unit{Op: queue.TaskSweep, Index: d.Shard}, d)
	case *queue.CheckDone:
		return r.task(dispatch.Unit{Op: queue.TaskCheck, Index: d.Shard}, d)
	case *queue.TaskAlive:
		// A long task reports as it goes: alive while word comes.
		return dispatch.Completion{Unit: dispatch.Unit{Op: d.Op, Index: d.Shard}, Alive: true, Attempt: d.Attempt}, true
	case *queue.WorkFailed:
		u := dispatch.Unit{Op: d.Op, Target: d.Target, Index: d.Index}
		if r.failed[u] {
			return dispatch.Completion{}, false
		}
		r.failed[u] = true
		return dispatch.Completion{Unit: u, Err: &WorkError{Failed: *d}}, true
	}
	return dispatch.Completion{}, false
}

// task records the first completion of a maintenance task; r.mu is held.
func (r *records) task(u dispatch.Unit, d any) (dispatch.Completion, bool) {
	if r.tasks[u] != nil {
		return dispatch.Completion{}, false
	}
	r.tasks[u] = d
	r.progress(1, 0)
	r.count++
	return dispatch.Completion{Unit: u}, true
}

// done reports whether unit u has completed.
func (r *records) done(u dispatch.Unit) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch u.Op {
	case queue.OpRead:
		return r.chunks[u.Index] != nil
	case queue.OpScan:
		return r.scan != nil
	case queue.TaskCondemn, queue.TaskSweep, queue.TaskCheck:
		return r.tasks[u] != nil
	}
	return r.steps[u] != nil
}

// taskDone returns task u's completion, or nil.
func (r *records) taskDone(u dispatch.Unit) any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tasks[u]
}

// chunk returns chunk i's completion, or nil.
func (r *records) chunk(i int) *queue.ChunkDone {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunks[i]
}

// step returns u's completion, or nil.
func (r *records) step(u dispatch.Unit) *queue.StepDone {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.steps[u]
}

// fileProblems returns the file problems readers reported.
func (r *records) fileProblems() []source.FileProblem {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.problems
}

// scanBatch is a scan batch as records keep it: its entries packed as a
// plan.Scan holds them, with the first one's path, or why it could not be
// unpacked.
type scanBatch struct {
	entries plan.PackedEntries
	first   string
	err     error
}

// scanned returns the listing of the scan that completed, its batches in
// order, and drops them.
func (r *records) scanned() (*queue.ScanDone, *plan.Scan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scan == nil {
		return nil, nil, errors.New("scan: no completion recorded")
	}
	scan := &plan.Scan{}
	for i := range r.scan.Batches {
		b := r.batches[[2]int{r.scan.Attempt, i}]
		switch {
		case b == nil:
			return nil, nil, fmt.Errorf("scan: batch %d of %d missing", i, r.scan.Batches)
		case b.err != nil:
			return nil, nil, fmt.Errorf("scan: %w", b.err)
		case i == 0 && (b.entries.Len() == 0 || b.first != "."):
			return nil, nil, errors.New("scan: the listing does not start with the tree's root")
		}
		scan.AddPacked(b.entries)
	}
	clear(r.batches) // those of scan attempts that did not complete too
	if scan.Len() == 0 {
		return nil, nil, errors.New("scan: the listing does not start with the tree's root")
	}
	return r.scan, scan, nil
}

// WorkError is a job's failure as the worker that found it reported it.
type WorkError struct {
	Failed queue.WorkFailed
}

func (e *WorkError) Error() string { return e.Failed.Message }

// Code is why the work failed.
func (e *WorkError) Code() queue.Code { return e.Failed.Code }

// follow replays the job's completions recorded so far and then delivers
// new ones on jr.dones, until stopped.
func (jr *jobRun) follow(ctx context.Context) error {
	jr.rec = newRecords(func(chunks int, bytes int64) {
		jr.job.Progress.ChunksDone += chunks
		jr.job.Progress.BytesDone += bytes
	})
	jr.dones = make(chan any, 256)
	it, err := queue.NewTail(ctx, jr.c.js, queue.StreamDone, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{queue.DoneFilter(jr.job.ID)},
	})
	if err != nil {
		return fmt.Errorf("follow completions: %w", err)
	}
	backlog := it.Backlog()
	for range backlog { // replay synchronously
		msg, err := it.Next(ctx)
		if err != nil {
			it.Stop()
			return fmt.Errorf("replay completions: %w", err)
		}
		if v, err := queue.DecodeDone(msg.Subject(), msg.Data()); err == nil {
			if _, isFailure := v.(*queue.WorkFailed); !isFailure { // a failure is news of the epoch that had it
				jr.rec.add(v)
			}
		}
	}
	if backlog > 0 {
		jr.logger.InfoContext(ctx, "replayed completions", "count", jr.rec.count)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			msg, err := it.Next(ctx)
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() == nil {
					// The job goes on without completions: it re-issues
					// its work and then fails, loudly.
					jr.logger.ErrorContext(ctx, "following completions failed", "err", err)
				}
				return
			}
			v, err := queue.DecodeDone(msg.Subject(), msg.Data())
			if err != nil {
				jr.logger.WarnContext(ctx, "undecodable completion", "subject", msg.Subject(), "err", err)
				continue
			}
			select {
			case jr.dones <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	jr.stop = func() { it.Stop(); <-stopped }
	return nil
}
