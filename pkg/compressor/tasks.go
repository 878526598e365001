package compressor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/check"
	"github.com/bulkbackup/bulkbackup/pkg/prune"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// Maintenance tasks: the compressors also run the per-shard steps of
// prune and check jobs (queue.StreamTasks). A task says it is alive to its
// job (queue.TaskAlive) and to JetStream (InProgress) as it works, so a
// long one is neither re-issued nor redelivered; one whose compressor dies
// is redelivered after the ack wait. Every step is safe to run twice.

// taskAckWait is the ack wait of the tasks' consumer; a task in progress
// renews it every third of that.
const taskAckWait = time.Minute

// serveTasks serves the task stream until ctx is cancelled.
func (c *Compressor) serveTasks(ctx context.Context) error {
	mux := queue.NewMux(2)
	queue.HandleOp(mux, queue.TaskCondemn, c.condemn)
	queue.HandleOp(mux, queue.TaskSweep, c.sweep)
	queue.HandleOp(mux, queue.TaskCheck, c.check)
	workers := max(1, c.cfg.Workers/2)
	return queue.Serve(ctx, c.js, queue.StreamTasks, jetstream.ConsumerConfig{
		Durable:       queue.ConsumerTasks,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       taskAckWait,
		MaxAckPending: 256,
		MaxDeliver:    MaxDeliver,
	}, mux, queue.ConsumeConfig{Workers: workers, Prefetch: workers, DrainTimeout: c.cfg.DrainTimeout, Logger: c.logger, OnRetry: c.cfg.Metrics.Retry})
}

// taskRun is what one task's handler needs: its job's repository, and the
// beat that says it is alive.
type taskRun struct {
	c       *Compressor
	msg     jetstream.Msg
	jobID   string
	op      string
	shard   int
	attempt int
	mu      sync.Mutex
	last    time.Time // the last beat
}

// begin opens the task's repository after checking its job still runs.
func (c *Compressor) begin(ctx context.Context, msg jetstream.Msg, op, jobID, repoName string, shard, attempt int) (*taskRun, *repository.Repository, error) {
	rec, err := c.jobRecord(ctx, jobID)
	if err != nil {
		return nil, nil, err
	}
	if queue.Final(rec.State) {
		return nil, nil, queue.Permanent(fmt.Errorf("job %s is %s: %w", jobID, rec.State, errJobEnded))
	}
	repo, err := c.cfg.Repos.Get(ctx, repoName, false)
	if err != nil {
		return nil, nil, c.taskFailed(ctx, &queue.WorkFailed{JobID: jobID, Op: op, Index: shard, Code: codeOrFailed(err), Message: err.Error()})
	}
	t := &taskRun{c: c, msg: msg, jobID: jobID, op: op, shard: shard, attempt: attempt}
	c.logger.InfoContext(ctx, "task started", "job_id", jobID, "op", op, "shard", shard, "attempt", attempt)
	return t, repo, nil
}

// alive tells JetStream and the job that the task is still worked on, at
// most every few seconds.
func (t *taskRun) alive() { t.beat(false) }

// beat is alive, now whatever the time of the last beat with now.
func (t *taskRun) beat(now bool) {
	t.mu.Lock()
	if !now && time.Since(t.last) < 5*time.Second {
		t.mu.Unlock()
		return
	}
	t.last = time.Now()
	t.mu.Unlock()
	_ = t.msg.InProgress()
	a := &queue.TaskAlive{V: queue.WorkVersion, JobID: t.jobID, Op: t.op, Shard: t.shard, Attempt: t.attempt}
	_, _ = t.c.js.Publish(context.Background(), queue.DoneSubject(t.jobID, queue.DoneAlive), queue.Encode(a))
}

// keepAlive calls alive every third of the ack wait until stopped, for
// steps that take long between their own beats.
func (t *taskRun) keepAlive() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(taskAckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.beat(true)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// finish publishes the task's completion d (subject kind, deduplicated by
// msgID), or, for an error, what it means: a failure the job fails with,
// a retry, or, for a straggling sweep, nothing.
func (t *taskRun) finish(ctx context.Context, kind string, d any, msgID string, err error) error {
	if errors.Is(err, prune.ErrNotSweeping) {
		t.c.logger.InfoContext(ctx, "stale sweep task: its prune is not sweeping; nothing deleted", "job_id", t.jobID, "shard", t.shard)
		return queue.Permanent(err)
	}
	if err != nil {
		code, permanent := codeOf(err)
		if errors.Is(err, prune.ErrUnreadableSnapshot) {
			code, permanent = queue.CodeCorrupt, true
		}
		if !permanent {
			return err
		}
		return t.c.taskFailed(ctx, &queue.WorkFailed{JobID: t.jobID, Op: t.op, Index: t.shard, Code: code, Message: err.Error()})
	}
	if _, err := t.c.js.Publish(ctx, queue.DoneSubject(t.jobID, kind), queue.Encode(d), jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish completion: %w", err)
	}
	t.c.logger.InfoContext(ctx, "task done", "job_id", t.jobID, "op", t.op, "shard", t.shard)
	return nil
}

// taskFailed records a task's failure, which fails its job.
func (c *Compressor) taskFailed(ctx context.Context, f *queue.WorkFailed) error {
	f.V, f.Worker = queue.WorkVersion, c.cfg.Name
	c.logger.ErrorContext(ctx, "task failed", "job_id", f.JobID, "op", f.Op, "shard", f.Index, "code", f.Code, "err", f.Message)
	if _, err := c.js.Publish(ctx, queue.DoneSubject(f.JobID, queue.DoneFailed), queue.Encode(f),
		jetstream.WithMsgID(queue.WorkFailedMsgID(f))); err != nil {
		return fmt.Errorf("publish failure: %w", err)
	}
	return queue.Permanent(errors.New(f.Message))
}

func codeOrFailed(err error) queue.Code {
	code, _ := codeOf(err)
	return code
}

func (c *Compressor) condemn(ctx context.Context, msg jetstream.Msg, item *queue.CondemnShard) error {
	t, repo, err := c.begin(ctx, msg, queue.TaskCondemn, item.JobID, item.Repo, item.Shard, item.Attempt)
	if err != nil {
		return err
	}
	defer t.keepAlive()()
	token := strings.ToLower(rand.Text())
	res, err := prune.Condemn(ctx, repo, item.Prune, item.Shard, token, t.alive)
	d := &queue.CondemnDone{V: queue.WorkVersion, JobID: item.JobID, Shard: item.Shard, Worker: c.cfg.Name}
	if res != nil {
		d.Result = *res
	}
	return t.finish(ctx, queue.DoneCondemned, d, queue.CondemnDoneMsgID(d), err)
}

func (c *Compressor) sweep(ctx context.Context, msg jetstream.Msg, item *queue.SweepShard) error {
	t, repo, err := c.begin(ctx, msg, queue.TaskSweep, item.JobID, item.Repo, item.Shard, item.Attempt)
	if err != nil {
		return err
	}
	defer t.keepAlive()()
	res, err := prune.Sweep(ctx, repo, item.Prune, item.Shard, t.alive)
	d := &queue.SweepDone{V: queue.WorkVersion, JobID: item.JobID, Shard: item.Shard, Worker: c.cfg.Name}
	if res != nil {
		d.Result = *res
	}
	return t.finish(ctx, queue.DoneSwept, d, queue.SweepDoneMsgID(d), err)
}

func (c *Compressor) check(ctx context.Context, msg jetstream.Msg, item *queue.CheckShard) error {
	t, repo, err := c.begin(ctx, msg, queue.TaskCheck, item.JobID, item.Repo, item.Shard, item.Attempt)
	if err != nil {
		return err
	}
	defer t.keepAlive()()
	res, err := check.Shard(ctx, repo, check.Options{Shard: item.Shard, Shards: item.Shards, ReadData: item.ReadData,
		Subset: item.Subset, Seed: item.Seed, Alive: t.alive})
	d := &queue.CheckDone{V: queue.WorkVersion, JobID: item.JobID, Shard: item.Shard, Worker: c.cfg.Name}
	if res != nil {
		d.Result = *res
	}
	return t.finish(ctx, queue.DoneChecked, d, queue.CheckDoneMsgID(d), err)
}
