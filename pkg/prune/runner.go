package prune

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// ErrBusy is wrapped when a prune would start while another prune of the
// same repository has not finished.
var ErrBusy = errors.New("prune: another prune of this repository has not finished")

// ShardTarget is how many chunks a shard should hold at most: the shard
// count is chosen so that one shard's chunks, which a worker holds in
// memory, stay about this many.
const ShardTarget = 256 << 10

// DefaultMinShards is the fewest shards a prune uses unless told
// otherwise, so that even a small repository's work spreads over workers.
const DefaultMinShards = 16

// keepPrunes is how many finished prunes' states are kept, for people.
const keepPrunes = 10

// Options tunes a prune.
type Options struct {
	// DryRun marks only: it counts what would be deleted and deletes
	// nothing, and backups never wait for it.
	DryRun bool
	// Abandoned, if set, reports whether another prune of the repository
	// that has not finished was given up by whoever ran it (its job
	// ended): this prune then closes it first (nothing more is deleted in
	// its name). Without it, or when it reports false, such a prune makes
	// this one fail with ErrBusy.
	Abandoned func(id string) bool
	// Shards, if not 0, is the shard count (a power of two up to 256);
	// 0 chooses from the repository's size.
	Shards int
}

// Runner drives a prune through its phases (see the package doc). The
// steps of a phase run wherever Condemn and Sweep send them: across a
// fleet's workers in the coordinator, in this process in tests. Each must
// run the step (Condemn, Sweep) for every shard given, and may run a step
// more than once.
type Runner struct {
	Repo *repository.Repository
	// Condemn runs Condemn for each shard, each under a token of its own,
	// and returns the result of each.
	Condemn func(ctx context.Context, id string, shards []int) (map[int]*CondemnResult, error)
	// Sweep runs Sweep for each shard and returns the result of each.
	Sweep func(ctx context.Context, id string, shards []int) (map[int]*repository.ShardResult, error)
	// Status, if set, is told what the prune is doing or waiting for.
	Status func(msg string)
	// Logger receives the phases; nil discards.
	Logger *slog.Logger
}

func (r *Runner) status(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if r.Status != nil {
		r.Status(msg)
	}
	r.logger().Info(msg)
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Run runs prune id to its end, or resumes it from the phase its state
// records. It returns the final state. A prune that finds another prune
// of the repository unfinished fails with ErrBusy.
func (r *Runner) Run(ctx context.Context, id string, opts Options) (*repository.PruneState, error) {
	repo := r.Repo
	p, err := repo.LoadPrune(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if p, err = r.begin(ctx, id, opts); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		r.logger().InfoContext(ctx, "resuming prune", "prune", id, "phase", p.Phase)
	}
	p, err = r.phases(ctx, p)
	if err != nil && ctx.Err() == nil {
		// Given up: close it, so no backup waits for it and nothing more is
		// deleted in its name. (Interrupted by shutdown, it is resumed.)
		r.abort(context.WithoutCancel(ctx), id, err)
	}
	return p, err
}

// phases runs p's phases from the one it is in to done.
func (r *Runner) phases(ctx context.Context, p *repository.PruneState) (*repository.PruneState, error) {
	var err error
	for {
		switch p.Phase {
		case repository.PhaseMarking:
			err = r.mark(ctx, p)
		case repository.PhaseCondemned:
			err = r.waitWriters(ctx, p)
		case repository.PhaseSweeping:
			err = r.sweep(ctx, p)
		case repository.PhaseClosing:
			err = r.close(ctx, p)
		case repository.PhaseDone:
			r.finish(ctx, p)
			return p, nil
		default:
			return nil, fmt.Errorf("prune %s: unknown phase %q", p.ID, p.Phase)
		}
		if err != nil {
			return nil, err
		}
	}
}

// close ends a closing prune: every sweep that may still run read
// "sweeping" before closing was written, and deletes for at most a window
// after; once the fence has passed, the prune is done.
func (r *Runner) close(ctx context.Context, p *repository.PruneState) error {
	r.status("closing: waiting %s for sweeps that may still run", r.Repo.Timing().DeleteFence)
	if err := sleep(ctx, r.Repo.Timing().DeleteFence); err != nil {
		return err
	}
	p.Phase, p.Finished = repository.PhaseDone, time.Now().UTC()
	return r.Repo.SavePrune(ctx, p)
}

// abort closes prune id after err: a marking prune is done at once
// (nobody honours it), a later one closes first. It logs what fails.
func (r *Runner) abort(ctx context.Context, id string, cause error) {
	if err := r.Abandon(ctx, id, cause.Error()); err != nil {
		r.logger().ErrorContext(ctx, "prune failed and could not be closed; the next prune closes it", "prune", id, "err", err)
	}
}

// Abandon closes prune id, which its runner gave up (it failed, or its job
// was cancelled): it records why, moves it to closing unless it was
// marking, waits the fence, and marks it done; the chunks it did not
// delete are left for the next prune. Call it only when no runner runs
// the prune any more.
func (r *Runner) Abandon(ctx context.Context, id, why string) error {
	repo := r.Repo
	p, err := repo.LoadPrune(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.Phase == repository.PhaseDone {
		return nil
	}
	p.Error = why
	if p.Phase != repository.PhaseMarking {
		p.Phase, p.ClosingAt = repository.PhaseClosing, time.Now().UTC()
		if err := repo.SavePrune(ctx, p); err != nil {
			return err
		}
		if err := sleep(ctx, repo.Timing().DeleteFence); err != nil {
			return err
		}
	}
	p.Phase, p.Finished = repository.PhaseDone, time.Now().UTC()
	if err := repo.SavePrune(ctx, p); err != nil {
		return err
	}
	r.finish(ctx, p)
	return nil
}

// begin lists the snapshots and records the prune, marking.
func (r *Runner) begin(ctx context.Context, id string, opts Options) (*repository.PruneState, error) {
	repo := r.Repo
	others, err := repo.PruneIDs(ctx)
	if err != nil {
		return nil, err
	}
	for _, other := range others {
		q, err := repo.LoadPrune(ctx, other)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: prune %s cannot be read: %w", ErrBusy, other, err)
		}
		if q.Phase != repository.PhaseDone && opts.Abandoned != nil && opts.Abandoned(other) {
			r.status("closing prune %s, which its job gave up (%s)", other, q.Phase)
			if err := r.Abandon(ctx, other, "given up; closed by prune "+id); err != nil {
				return nil, fmt.Errorf("close abandoned prune %s: %w", other, err)
			}
			continue
		}
		if q.Phase != repository.PhaseDone {
			return nil, fmt.Errorf("%w: prune %s (started %s) is %s; the coordinator that runs it resumes it when it starts",
				ErrBusy, other, q.Started.Format(time.RFC3339), q.Phase)
		}
	}
	heads, err := repo.SnapshotHeaders(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	ids := make([]string, len(heads))
	var chunks int64
	for i, h := range heads {
		ids[i] = h.ID
		chunks += int64(h.Stats.Chunks)
	}
	slices.Sort(ids) // the list is searched by ID when the prune sweeps
	shards := opts.Shards
	if shards == 0 {
		shards = ShardsFor(chunks)
	}
	if err := repository.CheckShards(shards); err != nil {
		return nil, err
	}
	if err := repo.PutPruneSnapshots(ctx, id, "snapshots", ids); err != nil {
		return nil, err
	}
	p := &repository.PruneState{ID: id, Phase: repository.PhaseMarking, DryRun: opts.DryRun, Shards: shards,
		Started: time.Now().UTC(), Snapshots: len(ids)}
	if err := repo.SavePrune(ctx, p); err != nil {
		return nil, err
	}
	r.status("marking: %d snapshots, %d shards", len(ids), shards)
	return p, nil
}

// ShardsFor returns the shard count for a repository whose snapshots
// name about chunks chunks: a power of two, so that a shard holds about
// ShardTarget of them, from DefaultMinShards to repository.MaxShards.
func ShardsFor(chunks int64) int {
	n := DefaultMinShards
	for n < repository.MaxShards && int64(n)*ShardTarget < chunks {
		n *= 2
	}
	return n
}

func allShards(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// mark runs Condemn on every shard, records which list each uses, and
// moves to condemned (dry run: done).
func (r *Runner) mark(ctx context.Context, p *repository.PruneState) error {
	results, err := r.Condemn(ctx, p.ID, allShards(p.Shards))
	if err != nil {
		return fmt.Errorf("prune %s: marking: %w", p.ID, err)
	}
	p.Lists = make([]string, p.Shards)
	p.Chunks, p.Bytes, p.Condemned, p.CondemnedBytes, p.Left = 0, 0, 0, 0, 0
	for g := range p.Shards {
		res := results[g]
		if res == nil {
			return fmt.Errorf("prune %s: marking: no result for shard %d", p.ID, g)
		}
		p.Lists[g] = res.Token
		p.Chunks += res.Chunks
		p.Bytes += res.Bytes
		p.Condemned += res.Condemned
		p.CondemnedBytes += res.CondemnedBytes
		p.Left += res.Left
	}
	now := time.Now().UTC()
	if p.DryRun {
		p.Phase, p.CondemnedAt, p.Finished = repository.PhaseDone, now, now
	} else {
		p.Phase, p.CondemnedAt = repository.PhaseCondemned, now
	}
	if err := r.Repo.SavePrune(ctx, p); err != nil {
		return err
	}
	r.status("condemned %d of %d chunks (%d bytes) that no snapshot names", p.Condemned, p.Chunks, p.CondemnedBytes)
	return nil
}

// waitWriters waits out every process's view of the prunes (GuardWait),
// then for every backup registered then to end; it then stores the
// snapshots committed since marking and moves to sweeping.
func (r *Runner) waitWriters(ctx context.Context, p *repository.PruneState) error {
	repo := r.Repo
	t := repo.Timing()
	if err := sleep(ctx, t.GuardWait); err != nil {
		return err
	}
	writers, err := repo.Writers(ctx)
	if err != nil {
		return err
	}
	for _, w := range writers {
		if err := r.waitWriter(ctx, w); err != nil {
			return err
		}
	}
	marked, err := repo.LoadPruneSnapshots(ctx, p.ID, "snapshots")
	if err != nil {
		return err
	}
	now, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return err
	}
	var late []string
	for _, s := range now {
		if _, found := slices.BinarySearch(marked, s); !found {
			late = append(late, s)
		}
	}
	if err := repo.PutPruneSnapshots(ctx, p.ID, "late", late); err != nil {
		return err
	}
	p.Phase, p.SweepingAt = repository.PhaseSweeping, time.Now().UTC()
	if err := repo.SavePrune(ctx, p); err != nil {
		return err
	}
	r.status("sweeping: %d snapshots committed while the prune waited keep their chunks", len(late))
	return nil
}

// waitWriter waits until backup w has ended: its registration is gone, or
// has expired (its coordinator is gone).
func (r *Runner) waitWriter(ctx context.Context, w *repository.Writer) error {
	repo := r.Repo
	announced := false
	for {
		if time.Now().After(w.Expires) {
			r.logger().WarnContext(ctx, "backup registration expired; not waiting for it", "job_id", w.ID, "expired", w.Expires)
			return nil
		}
		if !announced {
			r.status("waiting for backup %s of %s (running since %s) to end", w.ID, cmp.Or(w.Source, "?"), w.Started.Format(time.RFC3339))
			announced = true
		}
		if err := sleep(ctx, repo.Timing().Poll); err != nil {
			return err
		}
		next, err := repo.LoadWriter(ctx, w.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		w = next
	}
}

// sweep runs Sweep on every shard and moves to closing.
func (r *Runner) sweep(ctx context.Context, p *repository.PruneState) error {
	results, err := r.Sweep(ctx, p.ID, allShards(p.Shards))
	if err != nil {
		return fmt.Errorf("prune %s: sweeping: %w", p.ID, err)
	}
	p.Deleted, p.DeletedBytes, p.Kept = 0, 0, 0
	for g := range p.Shards {
		res := results[g]
		if res == nil {
			return fmt.Errorf("prune %s: sweeping: no result for shard %d", p.ID, g)
		}
		p.Deleted += res.Deleted
		p.DeletedBytes += res.DeletedBytes
		p.Kept += res.Kept
	}
	p.Phase, p.ClosingAt = repository.PhaseClosing, time.Now().UTC()
	if err := r.Repo.SavePrune(ctx, p); err != nil {
		return err
	}
	r.status("deleted %d chunks (%d bytes); kept %d that backups named meanwhile", p.Deleted, p.DeletedBytes, p.Kept)
	return nil
}

// finish removes the done prune's lists and markers, and the states of
// all but the newest finished prunes. What fails here is logged: the
// prune itself is done.
func (r *Runner) finish(ctx context.Context, p *repository.PruneState) {
	repo := r.Repo
	if err := repo.RemovePruneData(ctx, p.ID); err != nil {
		r.logger().WarnContext(ctx, "prune done; its lists are left", "prune", p.ID, "err", err)
	}
	ids, err := repo.PruneIDs(ctx)
	if err != nil {
		return
	}
	var done []*repository.PruneState
	for _, id := range ids {
		if q, err := repo.LoadPrune(ctx, id); err == nil && q.Phase == repository.PhaseDone {
			done = append(done, q)
		}
	}
	slices.SortFunc(done, func(a, b *repository.PruneState) int { return b.Finished.Compare(a.Finished) })
	for _, q := range done[min(len(done), keepPrunes):] {
		if err := repo.RemovePrune(ctx, q.ID); err != nil {
			r.logger().WarnContext(ctx, "old prune state left", "prune", q.ID, "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
