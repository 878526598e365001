package prune

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// ErrUnreadableSnapshot is wrapped when a prune stops because a snapshot
// cannot be read: what it names is unknown, so nothing may be deleted.
var ErrUnreadableSnapshot = errors.New("prune: a snapshot cannot be read")

// ErrNotSweeping is wrapped by Sweep when the prune is not (or no longer)
// sweeping: a straggling duplicate of a sweep that must delete nothing.
var ErrNotSweeping = errors.New("prune: not sweeping")

// CondemnResult is what the marking of one shard found.
type CondemnResult struct {
	// Token names the shard's condemned list this run stored.
	Token string `json:"token"`
	// Chunks and Bytes count the shard's stored chunk objects.
	Chunks int64 `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// Condemned and CondemnedBytes count those no listed snapshot names;
	// Left those of them not condemned this time (the list is full).
	Condemned      int64 `json:"condemned"`
	CondemnedBytes int64 `json:"condemned_bytes"`
	Left           int64 `json:"left,omitempty"`
}

// Condemn marks shard g of prune id: it reads the chunks of the snapshots
// the prune listed, lists the shard's stored chunks, and stores those no
// snapshot names as the shard's condemned list under token (a name unique
// to this run of the step). alive, if set, is called now and then while
// it works. A snapshot that cannot be read stops it with
// ErrUnreadableSnapshot.
func Condemn(ctx context.Context, repo *repository.Repository, id string, g int, token string, alive func()) (*CondemnResult, error) {
	p, err := repo.LoadPrune(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.Phase != repository.PhaseMarking {
		return nil, fmt.Errorf("prune %s is %s, not marking: shard %d is not marked again", id, p.Phase, g)
	}
	if g < 0 || g >= p.Shards {
		return nil, fmt.Errorf("prune %s has %d shards, not %d", id, p.Shards, g+1)
	}
	ids, err := repo.LoadPruneSnapshots(ctx, id, "snapshots")
	if err != nil {
		return nil, err
	}
	beat := heartbeat(alive)
	refs, err := repo.ShardRefs(ctx, ids, g, p.Shards, func(sid string, err error) error {
		return fmt.Errorf("%w: %s: %w; prune deletes nothing while a snapshot's chunks are unknown (check the repository; forget the snapshot if it is lost)",
			ErrUnreadableSnapshot, sid, err)
	})
	if err != nil {
		return nil, err
	}
	beat()
	res := &CondemnResult{Token: token}
	var list []repository.Condemned
	for c, err := range repo.ListShard(ctx, g, p.Shards) {
		if err != nil {
			return nil, err
		}
		res.Chunks++
		res.Bytes += c.Size
		if _, named := refs[c.ID]; named {
			continue
		}
		if len(list) >= repository.MaxCondemnedPerShard {
			res.Left++
			continue
		}
		list = append(list, repository.Condemned{ID: c.ID, Size: c.Size})
		res.Condemned++
		res.CondemnedBytes += c.Size
		if res.Chunks%4096 == 0 {
			beat()
		}
	}
	if err := repo.PutCondemned(ctx, id, g, token, list); err != nil {
		return nil, err
	}
	return res, nil
}

// Sweep deletes the condemned chunks of shard g of prune id that neither a
// late snapshot nor a keep record names. It marks the shard deleting
// first and deleted at the end (a repeated sweep of a deleted shard
// returns what was recorded), and deletes in rounds of at most
// Timing.DeleteWindow, each begun by confirming that the prune is sweeping
// and listing the keep records again. A prune that is not sweeping makes
// it return ErrNotSweeping, deleting nothing more.
func Sweep(ctx context.Context, repo *repository.Repository, id string, g int, alive func()) (*repository.ShardResult, error) {
	if res, done, err := repo.ShardDeleted(ctx, id, g); err != nil || done {
		return &res, err
	}
	p, err := sweeping(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	if g < 0 || g >= p.Shards || g >= len(p.Lists) {
		return nil, fmt.Errorf("prune %s has %d shards, not %d", id, p.Shards, g+1)
	}
	if err := repo.MarkDeleting(ctx, id, g); err != nil {
		return nil, err
	}
	list, err := repo.LoadCondemned(ctx, id, g, p.Lists[g])
	if err != nil {
		return nil, err
	}
	var res repository.ShardResult
	if len(list) > 0 {
		late, err := repo.LoadPruneSnapshots(ctx, id, "late")
		if err != nil {
			return nil, err
		}
		refs, err := repo.ShardRefs(ctx, late, g, p.Shards, func(sid string, err error) error {
			return fmt.Errorf("%w: %s (committed while the prune waited): %w", ErrUnreadableSnapshot, sid, err)
		})
		if err != nil {
			return nil, err
		}
		beat := heartbeat(alive)
		window := repo.Timing().DeleteWindow
		for i := 0; i < len(list); {
			// A round: confirm, list the keep records, delete for at most
			// the window, counted from before the confirmation.
			start := time.Now()
			if _, err := sweeping(ctx, repo, id); err != nil {
				return nil, err
			}
			keep, err := repo.KeepRecords(ctx, id, g)
			if err != nil {
				return nil, err
			}
			for ; i < len(list) && time.Since(start) < window; i++ {
				c := list[i]
				if _, named := refs[c.ID]; named || keep[c.ID] {
					res.Kept++
					continue
				}
				if err := repo.DeleteChunk(ctx, c.ID); err != nil {
					return nil, err
				}
				res.Deleted++
				res.DeletedBytes += c.Size
				if res.Deleted%256 == 0 {
					beat()
				}
			}
		}
	}
	if err := repo.MarkDeleted(ctx, id, g, res); err != nil {
		return nil, err
	}
	return &res, nil
}

// sweeping reads prune id's state afresh and returns it if it is sweeping.
func sweeping(ctx context.Context, repo *repository.Repository, id string) (*repository.PruneState, error) {
	p, err := repo.LoadPrune(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.Phase != repository.PhaseSweeping {
		return nil, fmt.Errorf("%w: prune %s is %s", ErrNotSweeping, id, p.Phase)
	}
	return p, nil
}

// heartbeat returns a function that calls alive at most once a second.
func heartbeat(alive func()) func() {
	var last time.Time
	return func() {
		if alive != nil && time.Since(last) > time.Second {
			last = time.Now()
			alive()
		}
	}
}
