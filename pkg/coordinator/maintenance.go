package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/check"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/dispatch"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/prune"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// Maintenance jobs: prune and check. Each cuts the chunk hash space into
// shards and runs one task per shard on the compressors (BULK_TASKS); the
// coordinator holds snapshot IDs and per-shard results, never a whole
// repository's chunks. A prune's progress is in the repository as well as
// in its completions, so a coordinator restarted mid-prune resumes it from
// its phase (pkg/prune).

const (
	// taskWindow is how many tasks of a job are outstanding at once.
	taskWindow = 32
	// taskTimeout is how long a task may go without a word before it is
	// published again: tasks say they are alive as they work, and a
	// compressor that dies leaves its task to JetStream's redelivery.
	taskTimeout = 10 * time.Minute
)

// tasks runs task op on every shard in shards, item(u, attempt) making
// each shard's message, and returns when each has completed. With local
// set (an encrypted repository: see localStep) the coordinator runs the
// steps itself instead of publishing them to the compressors.
func (jr *jobRun) tasks(ctx context.Context, op string, shards []int, item func(shard, attempt int) any, local localStep) error {
	units := func(yield func(dispatch.Unit) bool) {
		for _, g := range shards {
			if !yield(dispatch.Unit{Op: op, Index: g}) {
				return
			}
		}
	}
	publish := func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error {
		_, err := jr.c.js.Publish(ctx, queue.TaskSubject(op, jr.job.ID), queue.Encode(item(u.Index, attempt)), jetstream.WithMsgID(msgID))
		return err
	}
	if local != nil {
		localCtx, stop := context.WithCancel(ctx)
		var running sync.WaitGroup
		defer running.Wait() // after stop: steps see their context end
		defer stop()
		slots := make(chan struct{}, localSteps)
		publish = func(_ context.Context, u dispatch.Unit, attempt int, _ string) error {
			running.Go(func() { jr.runLocal(localCtx, slots, op, u.Index, attempt, local) })
			return nil
		}
	}
	return jr.phaseWith(ctx, units, publish, taskWindow, taskTimeout)
}

// localStep runs one maintenance step on shard g in the coordinator,
// calling alive now and then, and returns its completion message.
//
// An encrypted repository's manifests open only with the metadata key,
// which the coordinator holds and the compressors do not
// (docs/security.md): the steps that read them (marking and sweeping a
// prune, checking references) run here, localSteps shards at a time.
type localStep func(ctx context.Context, g int, alive func()) (any, error)

// localSteps is how many steps of one job the coordinator runs at once:
// each holds one shard's chunk references and mostly waits on the store.
const localSteps = 4

// runLocal runs step on shard g when one of slots is free and hands its
// completion, or its failure, to the job's records as a compressor's would
// arrive.
func (jr *jobRun) runLocal(ctx context.Context, slots chan struct{}, op string, g, attempt int, step localStep) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-slots }()
	var mu sync.Mutex
	var last time.Time
	alive := func() {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 5*time.Second {
			return
		}
		last = time.Now()
		jr.deliver(ctx, &queue.TaskAlive{V: queue.WorkVersion, JobID: jr.job.ID, Op: op, Shard: g, Attempt: attempt})
	}
	// A step says it is alive as it goes only now and then (a shard whose
	// chunks are all named may not at all): beat on a timer as well, as a
	// compressor does, so that a long step is never issued twice.
	stepCtx, stepDone := context.WithCancel(ctx)
	var beating sync.WaitGroup
	beating.Go(func() {
		tick := time.NewTicker(taskTimeout / 10)
		defer tick.Stop()
		for {
			select {
			case <-stepCtx.Done():
				return
			case <-tick.C:
				alive()
			}
		}
	})
	d, err := jr.stepRetrying(ctx, op, g, alive, step, localRetryWaits)
	stepDone()
	beating.Wait()
	switch {
	case errors.Is(err, prune.ErrNotSweeping):
		jr.logger.InfoContext(ctx, "stale sweep step: its prune is not sweeping; nothing deleted", "shard", g)
		return
	case err != nil && ctx.Err() != nil:
		return
	case err != nil:
		code := queue.CodeFailed
		if errors.Is(err, prune.ErrUnreadableSnapshot) {
			code = queue.CodeCorrupt
		}
		d = &queue.WorkFailed{V: queue.WorkVersion, JobID: jr.job.ID, Op: op, Index: g, Code: code, Message: err.Error(), Worker: "coordinator"}
	}
	jr.deliver(ctx, d)
}

// localRetryWaits are the waits before each new try of a step that the
// repository failed for a reason that may pass (store.ErrUnavailable),
// about a minute in all. The coordinator opens repositories without the
// per-call retries of the workers' stores (pkg/store/retry, up to their
// --store-timeout), so its own steps are tried again whole; every step is
// safe to run again.
var localRetryWaits = []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}

// stepRetrying runs step on shard g, trying it again after each of waits
// while the repository is unavailable.
func (jr *jobRun) stepRetrying(ctx context.Context, op string, g int, alive func(), step localStep, waits []time.Duration) (any, error) {
	for try := 0; ; try++ {
		d, err := step(ctx, g, alive)
		if err == nil || !errors.Is(err, store.ErrUnavailable) || try == len(waits) {
			return d, err
		}
		jr.logger.WarnContext(ctx, "maintenance step failed; trying it again", "op", op, "shard", g, "attempt", try+1,
			"wait", waits[try], "err", err)
		alive()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(waits[try]):
		}
	}
}

// deliver hands v to the job's records, unless ctx ends first.
func (jr *jobRun) deliver(ctx context.Context, v any) {
	select {
	case jr.dones <- v:
	case <-ctx.Done():
	}
}

// prune runs a prune job (pkg/prune), its steps as tasks.
func (jr *jobRun) prune(ctx context.Context) error {
	req := jr.job.Prune
	repo, err := jr.c.cfg.Repos.Get(ctx, req.Repo, false)
	if err != nil {
		return err
	}
	var condemnHere, sweepHere localStep
	if repo.Encrypted() {
		condemnHere = func(ctx context.Context, g int, alive func()) (any, error) {
			res, err := prune.Condemn(ctx, repo, jr.job.ID, g, strings.ToLower(rand.Text()), alive)
			if err != nil {
				return nil, err
			}
			return &queue.CondemnDone{V: queue.WorkVersion, JobID: jr.job.ID, Shard: g, Worker: "coordinator", Result: *res}, nil
		}
		sweepHere = func(ctx context.Context, g int, alive func()) (any, error) {
			res, err := prune.Sweep(ctx, repo, jr.job.ID, g, alive)
			if err != nil {
				return nil, err
			}
			return &queue.SweepDone{V: queue.WorkVersion, JobID: jr.job.ID, Shard: g, Worker: "coordinator", Result: *res}, nil
		}
	}
	jr.job.Progress = queue.Progress{}
	if err := jr.start(ctx); err != nil {
		return err
	}
	runner := &prune.Runner{
		Repo:   repo,
		Logger: jr.logger,
		Status: func(msg string) {
			jr.refreshPruned(ctx, repo)
			jr.c.publishEvent(ctx, jr.job, msg)
		},
		Condemn: func(ctx context.Context, id string, shards []int) (map[int]*prune.CondemnResult, error) {
			jr.job.Progress.ChunksTotal += len(shards)
			err := jr.tasks(ctx, queue.TaskCondemn, shards, func(g, attempt int) any {
				return &queue.CondemnShard{V: queue.WorkVersion, JobID: jr.job.ID, Attempt: attempt, Repo: req.Repo, Prune: id, Shard: g}
			}, condemnHere)
			if err != nil {
				return nil, err
			}
			out := make(map[int]*prune.CondemnResult)
			for _, g := range shards {
				if d, ok := jr.rec.taskDone(dispatch.Unit{Op: queue.TaskCondemn, Index: g}).(*queue.CondemnDone); ok {
					out[g] = &d.Result
				}
			}
			return out, nil
		},
		Sweep: func(ctx context.Context, id string, shards []int) (map[int]*repository.ShardResult, error) {
			jr.job.Progress.ChunksTotal += len(shards)
			err := jr.tasks(ctx, queue.TaskSweep, shards, func(g, attempt int) any {
				return &queue.SweepShard{V: queue.WorkVersion, JobID: jr.job.ID, Attempt: attempt, Repo: req.Repo, Prune: id, Shard: g}
			}, sweepHere)
			if err != nil {
				return nil, err
			}
			out := make(map[int]*repository.ShardResult)
			for _, g := range shards {
				if d, ok := jr.rec.taskDone(dispatch.Unit{Op: queue.TaskSweep, Index: g}).(*queue.SweepDone); ok {
					out[g] = &d.Result
				}
			}
			return out, nil
		},
	}
	p, err := runner.Run(ctx, jr.job.ID, prune.Options{DryRun: req.DryRun, Abandoned: jr.c.pruneAbandoned})
	if errors.Is(context.Cause(ctx), errCancelled) {
		// Cancelled: nobody runs it any more; close it so backups stop
		// honouring it, leaving what it did not delete for the next one.
		if aerr := runner.Abandon(context.WithoutCancel(ctx), jr.job.ID, "cancelled"); aerr != nil {
			jr.logger.WarnContext(ctx, "cancelled prune not closed; the next prune closes it", "err", aerr)
		}
	}
	jr.refreshPruned(context.WithoutCancel(ctx), repo)
	if err != nil {
		jr.purge(context.WithoutCancel(ctx), ctx.Err() == nil || errors.Is(context.Cause(ctx), errCancelled))
		return err
	}
	jr.job.Pruned = p
	jr.job.Stats = manifest.Stats{Seconds: time.Since(jr.job.Started).Seconds()}
	jr.purge(ctx, true)
	return nil
}

// refreshPruned copies the prune's state from the repository into the
// job record, for those who follow it.
func (jr *jobRun) refreshPruned(ctx context.Context, repo *repository.Repository) {
	if p, err := repo.LoadPrune(ctx, jr.job.ID); err == nil {
		jr.job.Pruned = p
	}
}

// pruneAbandoned reports whether the unfinished prune id was given up by
// whoever ran it: its job has ended, or no job record names it.
func (c *Coordinator) pruneAbandoned(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job, err := c.loadJob(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true
	}
	return err == nil && queue.Final(job.State)
}

// check runs a check job: one task per shard on the compressors, then the
// snapshots that name what they found missing or damaged.
func (jr *jobRun) check(ctx context.Context) error {
	req := jr.job.Check
	repo, err := jr.c.cfg.Repos.Get(ctx, req.Repo, false)
	if err != nil {
		return err
	}
	if req.ReadData && !repo.OpensChunks() {
		return fmt.Errorf("repository %s is encrypted: check --read-data opens chunks, which only the repository's password or identity can, and the fleet never holds them; run it without --nats on a host that has them (bulkctl then checks in its own process), or check without --read-data, which checks every reference", req.Repo)
	}
	rep := jr.job.Checked
	if rep == nil { // a resumed job keeps its shards and its subset's seed
		heads, err := repo.SnapshotHeaders(ctx)
		if err != nil {
			return err
		}
		var chunks int64
		for _, h := range heads {
			chunks += int64(h.Stats.Chunks)
		}
		rep = &queue.CheckReport{Shards: prune.ShardsFor(chunks), ReadData: req.ReadData, Subset: req.Subset}
		if req.Subset > 0 && req.Subset < 1 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			rep.Seed = binary.LittleEndian.Uint64(b[:])
		}
		jr.job.Checked = rep
	}
	jr.job.Progress = queue.Progress{ChunksTotal: rep.Shards}
	if err := jr.start(ctx); err != nil {
		return err
	}
	shards := make([]int, rep.Shards)
	for i := range shards {
		shards[i] = i
	}
	var checkHere localStep
	if repo.Encrypted() {
		checkHere = func(ctx context.Context, g int, alive func()) (any, error) {
			res, err := check.Shard(ctx, repo, check.Options{Shard: g, Shards: rep.Shards, ReadData: rep.ReadData,
				Subset: rep.Subset, Seed: rep.Seed, Alive: alive})
			if err != nil {
				return nil, err
			}
			return &queue.CheckDone{V: queue.WorkVersion, JobID: jr.job.ID, Shard: g, Worker: "coordinator", Result: *res}, nil
		}
	}
	err = jr.tasks(ctx, queue.TaskCheck, shards, func(g, attempt int) any {
		return &queue.CheckShard{V: queue.WorkVersion, JobID: jr.job.ID, Attempt: attempt, Repo: req.Repo, Shard: g, Shards: rep.Shards,
			ReadData: rep.ReadData, Subset: rep.Subset, Seed: rep.Seed}
	}, checkHere)
	if err != nil {
		jr.purge(context.WithoutCancel(ctx), ctx.Err() == nil || errors.Is(context.Cause(ctx), errCancelled))
		return err
	}
	res := &rep.Result
	*res = check.Result{}
	unreadable := make(map[string]bool)
	for _, g := range shards {
		d, ok := jr.rec.taskDone(dispatch.Unit{Op: queue.TaskCheck, Index: g}).(*queue.CheckDone)
		if !ok {
			return fmt.Errorf("check: no result for shard %d", g)
		}
		r := &d.Result
		res.Snapshots = max(res.Snapshots, r.Snapshots)
		for _, u := range r.Unreadable {
			if id, _, _ := strings.Cut(u, ": "); !unreadable[id] {
				unreadable[id] = true
				res.Unreadable = append(res.Unreadable, u)
			}
		}
		res.Referenced += r.Referenced
		res.Stored += r.Stored
		res.Unreferenced += r.Unreferenced
		res.Read += r.Read
		res.ReadBytes += r.ReadBytes
		res.Missing += r.Missing
		res.Damaged += r.Damaged
		res.Repaired += r.Repaired
		for _, f := range r.Findings {
			if len(res.Findings) < checkMaxFindings {
				res.Findings = append(res.Findings, f)
			}
		}
	}
	if len(res.Findings) > 0 {
		jr.c.publishEvent(ctx, jr.job, "finding the snapshots and files that name missing or damaged chunks")
		if rep.Affected, err = affected(ctx, repo, res.Findings); err != nil {
			return err
		}
	}
	jr.job.Stats = manifest.Stats{Seconds: time.Since(jr.job.Started).Seconds()}
	jr.purge(ctx, true)
	return nil
}

// checkMaxFindings bounds the findings a check job's record lists.
const checkMaxFindings = check.MaxFindings

// affected loads the snapshots one at a time and returns those that name a
// chunk of findings, with the files whose content lies in them (at most
// queue.MaxAffected snapshots, and files each). A snapshot that cannot be
// loaded is left out: the check reports it as unreadable.
func affected(ctx context.Context, repo *repository.Repository, findings []check.Finding) ([]queue.AffectedSnapshot, error) {
	bad := make(map[string]bool, len(findings))
	for _, f := range findings {
		bad[f.Chunk] = true
	}
	ids, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []queue.AffectedSnapshot
	for _, id := range ids {
		s, err := repo.LoadSnapshot(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		badChunk := make(map[int]bool)
		for i, c := range s.Chunks {
			if !c.Zero && bad[c.Hash] {
				badChunk[i] = true
			}
		}
		if len(badChunk) == 0 {
			continue
		}
		a := queue.AffectedSnapshot{ID: s.ID, Time: s.Time, Host: s.Host, Path: s.Path, Chunks: len(badChunk)}
		for _, e := range s.Files {
			if slices.ContainsFunc(e.Content, func(x manifest.Extent) bool { return badChunk[x.Chunk] }) {
				a.FilesTotal++
				if len(a.Files) < queue.MaxAffected {
					a.Files = append(a.Files, e.Path)
				}
			}
		}
		out = append(out, a)
		if len(out) == queue.MaxAffected {
			break
		}
	}
	return out, nil
}

// recordRestoreDamage records, after a restore step failed because chunk
// hash is missing or damaged (a worker's code), the chunk in the damage
// registry, so the next backup that produces it stores it again.
func (jr *jobRun) recordRestoreDamage(ctx context.Context, repo *repository.Repository, err error, hash string) {
	var we *WorkError
	if !errors.As(err, &we) || (we.Code() != queue.CodeCorrupt && we.Code() != queue.CodeMissing) {
		return
	}
	if _, perr := chunk.ParseID(hash); perr != nil {
		return
	}
	state := "damaged"
	if we.Code() == queue.CodeMissing {
		state = "missing"
	}
	if rerr := repo.RecordDamage(ctx, repository.Damage{Chunk: hash, State: state, Problem: we.Failed.Message, FoundBy: repository.FoundByRestore}); rerr != nil {
		jr.logger.WarnContext(ctx, "damage not recorded", "chunk_id", hash, "err", rerr)
	}
}
