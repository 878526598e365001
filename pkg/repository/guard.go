package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// The writer's side of the prune protocol (docs/format.md section 10.4):
// before a backup names a chunk, stored by it or found stored, it makes
// sure no prune deletes the chunk under it, and it does not deduplicate
// against a chunk recorded as damaged.
//
// A process keeps a view of the repository's active prunes, their
// condemned lists, and the damage records, at most Timing.GuardRefresh old
// when it decides. For a chunk an active prune condemned, it writes a keep
// record, then looks whether the chunk's shard has begun deleting: if not,
// the sweep will see the keep record; if so, it waits until the shard is
// deleted and Timing.DeleteFence more, and only then stores or reuses the
// chunk.

// guard is a Repository's view of its prunes and damage records.
type guard struct {
	mu        sync.Mutex
	prunesAt  time.Time // when the view of the prunes was read (its start)
	prunes    []*PruneState
	finished  map[string]bool // prunes known to be done, or gone
	lists     map[listKey][]Condemned
	damagedAt time.Time
	damaged   map[chunk.ID]bool
}

type listKey struct {
	prune string
	shard int
}

func newGuard() *guard {
	return &guard{finished: make(map[string]bool), lists: make(map[listKey][]Condemned)}
}

// noteDamage updates the view of the damage records after this process
// changed one.
func (g *guard) noteDamage(id chunk.ID, damaged bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.damaged == nil {
		return
	}
	if damaged {
		g.damaged[id] = true
	} else {
		delete(g.damaged, id)
	}
}

// activePrunes returns the prunes backups must honour, from a view at most
// GuardRefresh old.
func (r *Repository) activePrunes(ctx context.Context) ([]*PruneState, error) {
	g := r.shared.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.prunesAt.IsZero() && time.Since(g.prunesAt) < r.shared.timing.GuardRefresh {
		return g.prunes, nil
	}
	start := time.Now()
	ids, err := r.PruneIDs(ctx)
	if err != nil {
		return nil, err
	}
	var active []*PruneState
	for _, id := range ids {
		if g.finished[id] {
			continue
		}
		p, err := r.LoadPrune(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		switch {
		case p.Phase == PhaseDone:
			g.finished[id] = true
		case p.Active():
			active = append(active, p)
		}
	}
	g.prunes, g.prunesAt = active, start
	return active, nil
}

// condemned returns shard s's condemned list of prune p, read once. It
// returns nil and no error when the prune has meanwhile finished (its lists
// are removed once it is done).
func (r *Repository) condemned(ctx context.Context, p *PruneState, s int) ([]Condemned, error) {
	g := r.shared.guard
	k := listKey{p.ID, s}
	g.mu.Lock()
	list, ok := g.lists[k]
	g.mu.Unlock()
	if ok {
		return list, nil
	}
	if s >= len(p.Lists) {
		return nil, fmt.Errorf("prune %s: state has %d condemned lists, needs %d", p.ID, len(p.Lists), p.Shards)
	}
	list, err := r.LoadCondemned(ctx, p.ID, s, p.Lists[s])
	if errors.Is(err, store.ErrNotFound) {
		if done, derr := r.pruneFinished(ctx, p.ID); derr != nil || done {
			return nil, derr
		}
	}
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lists[k] = list
	return list, nil
}

// pruneFinished reads prune id's state afresh and reports whether it is
// done or gone, remembering it if so.
func (r *Repository) pruneFinished(ctx context.Context, id string) (bool, error) {
	p, err := r.LoadPrune(ctx, id)
	done := errors.Is(err, store.ErrNotFound) || err == nil && p.Phase == PhaseDone
	if err != nil && !done {
		return false, err
	}
	if done {
		g := r.shared.guard
		g.mu.Lock()
		g.finished[id] = true
		for k := range g.lists {
			if k.prune == id {
				delete(g.lists, k)
			}
		}
		g.mu.Unlock()
	}
	return done, nil
}

func contains(list []Condemned, id chunk.ID) bool {
	_, found := slices.BinarySearchFunc(list, id, func(c Condemned, id chunk.ID) int { return bytes.Compare(c.ID[:], id[:]) })
	return found
}

// ErrPruneStuck is wrapped when a backup gives up waiting for a prune's
// shard to finish deleting.
var ErrPruneStuck = errors.New("repository: a prune is deleting this chunk's shard and has not finished")

// Protect makes sure no active prune deletes chunk id once the caller
// names it in a snapshot: call it before reusing or storing the chunk.
// For each prune that condemned the chunk it writes a keep record; when
// the chunk's shard has already begun deleting, it waits until the shard
// is deleted (and DeleteFence more), after which the chunk, if it is gone,
// must be stored again (StatChunk tells). It fails, wrapping
// ErrPruneStuck, when a shard does not finish within 20 DeleteFences.
func (r *Repository) Protect(ctx context.Context, id chunk.ID) error {
	prunes, err := r.activePrunes(ctx)
	if err != nil {
		return fmt.Errorf("protect chunk %s: %w", id, err)
	}
	for _, p := range prunes {
		s := p.Shard(id)
		list, err := r.condemned(ctx, p, s)
		if err != nil {
			return fmt.Errorf("protect chunk %s: %w", id, err)
		}
		if !contains(list, id) {
			continue
		}
		if err := r.putKeep(ctx, p.ID, s, id); err != nil {
			return err
		}
		deleting, err := r.Deleting(ctx, p.ID, s)
		if err != nil {
			return fmt.Errorf("protect chunk %s: %w", id, err)
		}
		if deleting {
			if err := r.awaitShard(ctx, p.ID, s); err != nil {
				return fmt.Errorf("protect chunk %s: %w", id, err)
			}
		}
	}
	return nil
}

// awaitShard waits until shard s of prune id is deleted, then DeleteFence
// more, so that every delete a sweep of it may still have under way has
// happened; or until the prune is done (its closing already waited).
func (r *Repository) awaitShard(ctx context.Context, id string, s int) error {
	t := r.shared.timing
	deadline := time.Now().Add(20 * t.DeleteFence)
	for {
		_, deleted, err := r.ShardDeleted(ctx, id, s)
		if err != nil {
			return err
		}
		if deleted {
			return sleep(ctx, t.DeleteFence)
		}
		done, err := r.pruneFinished(ctx, id)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: prune %s, shard %d, waited %s (is the coordinator that runs it up? it resumes the prune when it starts)",
				ErrPruneStuck, id, s, 20*t.DeleteFence)
		}
		if err := sleep(ctx, t.Poll); err != nil {
			return err
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

// DamageRecorded reports whether a damage record names chunk id, from a
// view at most GuardRefresh old.
func (r *Repository) DamageRecorded(ctx context.Context, id chunk.ID) (bool, error) {
	g := r.shared.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.damaged == nil || time.Since(g.damagedAt) >= r.shared.timing.GuardRefresh {
		start := time.Now()
		ids, err := r.damagedIDs(ctx)
		if err != nil {
			return false, err
		}
		g.damaged, g.damagedAt = ids, start
	}
	return g.damaged[id], nil
}

// CheckReuse is what a backup asks before it names chunk id: it protects
// the chunk from active prunes (Protect), then reports how it is stored
// (StatChunk) and whether a damage record names it (ChunkStat.Recorded).
// Name the chunk without storing it again only if the result is Reusable;
// otherwise store it, and clear a damage record once it is stored.
func (r *Repository) CheckReuse(ctx context.Context, id chunk.ID) (ChunkStat, error) {
	if err := r.Protect(ctx, id); err != nil {
		return ChunkStat{}, err
	}
	st, err := r.StatChunk(ctx, id)
	if err != nil {
		return st, err
	}
	if st.Recorded, err = r.DamageRecorded(ctx, id); err != nil {
		return st, fmt.Errorf("stat chunk %s: %w", id, err)
	}
	if st.Recorded && st.Problem == "" {
		st.Problem = "a check, verify or restore recorded it as damaged"
	}
	return st, nil
}
