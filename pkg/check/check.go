// Package check checks a repository's integrity without its sources: that
// every chunk a snapshot names is stored, whole (its header and length),
// and, reading the data, that it decodes to bytes with its hash. It works
// one shard of the chunk hash space at a time (repository.ShardOf), so a
// check fans out over workers, each holding one shard's chunks in memory.
//
// Every chunk found missing or damaged is recorded in the repository's
// damage registry (repository.RecordDamage), so the next backup that
// produces it stores it again; a recorded chunk read back intact (stored
// again since) has its record cleared.
package check

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// MaxFindings bounds the findings one shard's Result lists; the counts
// go on.
const MaxFindings = 1000

// DefaultWorkers is how many chunks a shard's check handles at once
// unless told otherwise: each is mostly a wait on the store.
const DefaultWorkers = 4

// States of a Finding.
const (
	StateMissing = "missing"
	StateDamaged = "damaged"
)

// Options says what to check.
type Options struct {
	// Shard and Shards select the part of the hash space: shard Shard of
	// Shards (a power of two up to 256).
	Shard, Shards int
	// ReadData reads the chunks back and checks their hash; without it a
	// chunk's header and length are checked, which finds missing and cut
	// chunks but not damage inside a payload.
	ReadData bool
	// Subset, with ReadData, reads about this fraction of the chunks
	// (the others get the header check), chosen by their hash and Seed:
	// a different Seed reads others. 0 or 1 reads all.
	Subset float64
	Seed   uint64
	// Workers is how many chunks are checked at once; DefaultWorkers.
	Workers int
	// Alive, if set, is called now and then while the check works.
	Alive func()
}

// Finding is a chunk a snapshot names that is missing or damaged.
type Finding struct {
	Chunk   string `json:"chunk"`
	State   string `json:"state"`
	Problem string `json:"problem,omitempty"`
}

// Result is what one shard's check found.
type Result struct {
	// Snapshots counts the snapshots read; Unreadable names those that
	// could not be ("ID: why").
	Snapshots  int      `json:"snapshots"`
	Unreadable []string `json:"unreadable,omitempty"`
	// Referenced counts the distinct chunks of the shard the snapshots
	// name; Stored the shard's chunk objects; Unreferenced those no
	// snapshot names (a prune deletes them).
	Referenced   int64 `json:"referenced"`
	Stored       int64 `json:"stored"`
	Unreferenced int64 `json:"unreferenced"`
	// Read and ReadBytes count the chunks read back, and their stored
	// bytes.
	Read      int64 `json:"read"`
	ReadBytes int64 `json:"read_bytes"`
	Missing   int64 `json:"missing"`
	Damaged   int64 `json:"damaged"`
	// Findings lists the first MaxFindings missing or damaged chunks.
	Findings []Finding `json:"findings,omitempty"`
	// Repaired counts damage records cleared: chunks read back intact.
	Repaired int64 `json:"repaired,omitempty"`
}

// Selected reports whether a check reading a subset of the chunks reads
// chunk id.
func Selected(id chunk.ID, subset float64, seed uint64) bool {
	if subset <= 0 || subset >= 1 {
		return true
	}
	return binary.BigEndian.Uint64(id[:8])^seed < uint64(subset*math.MaxUint64)
}

// Shard checks one shard. It fails only when the repository cannot be
// listed or read at all; missing and damaged chunks and unreadable
// snapshots are findings.
func Shard(ctx context.Context, repo *repository.Repository, opts Options) (*Result, error) {
	if err := repository.CheckShards(opts.Shards); err != nil {
		return nil, err
	}
	if opts.Shard < 0 || opts.Shard >= opts.Shards {
		return nil, fmt.Errorf("check: shard %d of %d", opts.Shard, opts.Shards)
	}
	ids, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	refs, err := repo.ShardRefs(ctx, ids, opts.Shard, opts.Shards, func(id string, err error) error {
		res.Unreadable = append(res.Unreadable, id+": "+err.Error())
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Snapshots = len(ids) - len(res.Unreadable)
	alive(opts)
	stored := make(map[chunk.ID]int64)
	for c, err := range repo.ListShard(ctx, opts.Shard, opts.Shards) {
		if err != nil {
			return nil, err
		}
		stored[c.ID] = c.Size
	}
	res.Referenced, res.Stored = int64(len(refs)), int64(len(stored))
	for id := range stored {
		if _, named := refs[id]; !named {
			res.Unreferenced++
		}
	}
	todo := make([]chunk.ID, 0, len(refs))
	for id := range refs {
		todo = append(todo, id)
	}
	slices.SortFunc(todo, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
	if err := checkChunks(ctx, repo, opts, todo, refs, stored, res); err != nil {
		return nil, err
	}
	slices.SortFunc(res.Findings, func(a, b Finding) int { return cmp.Compare(a.Chunk, b.Chunk) })
	return res, nil
}

// checkChunks checks the chunks todo on opts.Workers goroutines.
func checkChunks(ctx context.Context, repo *repository.Repository, opts Options, todo []chunk.ID,
	refs, stored map[chunk.ID]int64, res *Result) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next int
	)
	take := func() (chunk.ID, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(todo) || ctx.Err() != nil {
			return chunk.ID{}, false
		}
		next++
		if next%256 == 0 {
			alive(opts)
		}
		return todo[next-1], true
	}
	for range cmp.Or(opts.Workers, DefaultWorkers) {
		wg.Go(func() {
			var buf []byte // this worker's, reused for each chunk it reads
			for {
				id, ok := take()
				if !ok {
					return
				}
				f, read, repaired, err := checkOne(ctx, repo, opts, id, refs[id], stored, &buf)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				if read {
					res.Read++
					res.ReadBytes += stored[id]
				}
				if repaired {
					res.Repaired++
				}
				if f != nil {
					if f.State == StateMissing {
						res.Missing++
					} else {
						res.Damaged++
					}
					if len(res.Findings) < MaxFindings {
						res.Findings = append(res.Findings, *f)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// checkOne checks chunk id, reading it into *buf if it reads it: it
// returns a finding (recorded in the damage registry), whether the chunk
// was read back intact, and whether a damage record of it was then
// cleared.
func checkOne(ctx context.Context, repo *repository.Repository, opts Options, id chunk.ID, recorded int64,
	stored map[chunk.ID]int64, buf *[]byte) (f *Finding, read, repaired bool, err error) {
	if _, listed := stored[id]; !listed {
		f = &Finding{Chunk: id.String(), State: StateMissing, Problem: "no object"}
	} else if opts.ReadData && Selected(id, opts.Subset, opts.Seed) {
		*buf, err = repo.GetChunk(ctx, id, (*buf)[:0])
		switch {
		case errors.Is(err, store.ErrNotFound):
			f = &Finding{Chunk: id.String(), State: StateMissing, Problem: "no object"}
		case errors.Is(err, chunk.ErrCorrupt):
			f = &Finding{Chunk: id.String(), State: StateDamaged, Problem: err.Error()}
		case err != nil:
			return nil, false, false, err
		default:
			damaged, err := repo.DamageRecorded(ctx, id)
			if err != nil {
				return nil, true, false, err
			}
			if damaged {
				return nil, true, true, repo.ClearDamage(ctx, id)
			}
			return nil, true, false, nil
		}
	} else {
		st, err := repo.StatChunk(ctx, id)
		if err != nil {
			return nil, false, false, err
		}
		switch {
		case st.State == repository.ChunkMissing:
			f = &Finding{Chunk: id.String(), State: StateMissing, Problem: "no object"}
		case !st.Usable(recorded):
			f = &Finding{Chunk: id.String(), State: StateDamaged, Problem: cmp.Or(st.Problem, fmt.Sprintf("stored size %d, a snapshot recorded %d", st.Size, recorded))}
		default:
			return nil, false, false, nil
		}
	}
	err = repo.RecordDamage(ctx, repository.Damage{Chunk: f.Chunk, State: f.State, Problem: f.Problem, FoundBy: repository.FoundByCheck})
	return f, false, false, err
}

func alive(opts Options) {
	if opts.Alive != nil {
		opts.Alive()
	}
}
