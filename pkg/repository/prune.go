package repository

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// The objects of a prune (docs/format.md section 10.3). A prune's state is
// prunes/<id>; everything else it writes lies under prune/<id>/ and goes
// once it is done.
const (
	PrunesPrefix = "prunes/"
	PrunePrefix  = "prune/"
)

// Phases of a prune, in order.
const (
	// PhaseMarking: listing what the snapshots name and what is stored;
	// nothing is condemned yet and backups need not look.
	PhaseMarking = "marking"
	// PhaseCondemned: every shard's condemned list is written (Lists).
	// From here on, a backup about to rely on a condemned chunk asks the
	// prune to keep it.
	PhaseCondemned = "condemned"
	// PhaseSweeping: the backups running when the chunks were condemned
	// have ended; sweeps delete the condemned chunks nobody asked to keep.
	PhaseSweeping = "sweeping"
	// PhaseClosing: every shard is swept; no sweep starts deleting again.
	PhaseClosing = "closing"
	// PhaseDone: finished (or, DryRun, only counted). Backups ignore it.
	PhaseDone = "done"
)

// Shard counts a prune may use: the chunk hash space is cut by the first
// byte into a power of two of shards.
const (
	MinShards = 1
	MaxShards = 256
)

// MaxCondemnedPerShard bounds the chunks one shard's list condemns, so a
// backup holding a prune's lists in memory holds at most MaxShards times
// that many 40-byte entries. More garbage is left for the next prune.
const MaxCondemnedPerShard = 1 << 20

// PruneState is a prune's state: prunes/<id>, sealed JSON.
type PruneState struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Phase  string `json:"phase"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Shards is how many shards the hash space is cut into: a power of
	// two from MinShards to MaxShards.
	Shards int `json:"shards"`
	// Lists holds, once Phase is condemned or later, the token of each
	// shard's condemned list (prune/<id>/condemned/<shard>.<token>).
	Lists []string `json:"lists,omitempty"`

	Started     time.Time `json:"started"`
	CondemnedAt time.Time `json:"condemned_at,omitzero"`
	SweepingAt  time.Time `json:"sweeping_at,omitzero"`
	ClosingAt   time.Time `json:"closing_at,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`

	// What was found and done, for people.
	Snapshots      int   `json:"snapshots"`
	Chunks         int64 `json:"chunks"`
	Bytes          int64 `json:"bytes"`
	Condemned      int64 `json:"condemned"`
	CondemnedBytes int64 `json:"condemned_bytes"`
	// Left counts unreferenced chunks not condemned this time
	// (MaxCondemnedPerShard): the next prune takes them.
	Left         int64 `json:"left,omitempty"`
	Deleted      int64 `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	Kept         int64 `json:"kept"`
	// Error says why a prune that is done did not finish its work.
	Error string `json:"error,omitempty"`
}

// Active reports whether backups must honour the prune: it has condemned
// chunks and may not be done deleting them.
func (p *PruneState) Active() bool {
	return !p.DryRun && (p.Phase == PhaseCondemned || p.Phase == PhaseSweeping || p.Phase == PhaseClosing)
}

// Shard returns the shard of id among p's shards.
func (p *PruneState) Shard(id chunk.ID) int { return ShardOf(id, p.Shards) }

// ShardOf returns the shard of id when the hash space is cut into shards
// (a power of two up to 256) by the first byte.
func ShardOf(id chunk.ID, shards int) int { return int(id[0]) * shards / 256 }

// CheckShards returns an error unless n is a power of two from MinShards
// to MaxShards.
func CheckShards(n int) error {
	if n < MinShards || n > MaxShards || n&(n-1) != 0 {
		return fmt.Errorf("repository: %d shards: want a power of two from %d to %d", n, MinShards, MaxShards)
	}
	return nil
}

// ShardPrefixes returns the key prefixes (chunks/<h2>/) of the chunks in
// shard g of n.
func ShardPrefixes(g, n int) []string {
	var out []string
	for b := g * 256 / n; b < (g+1)*256/n; b++ {
		out = append(out, fmt.Sprintf("%s%02x/", ChunksPrefix, b))
	}
	return out
}

func pruneKey(id string) string           { return PrunesPrefix + id }
func pruneDir(id string) string           { return PrunePrefix + id + "/" }
func pruneListKey(id, name string) string { return pruneDir(id) + name }
func condemnedKey(id string, g int, token string) string {
	return fmt.Sprintf("%scondemned/%03d.%s", pruneDir(id), g, token)
}
func deletingKey(id string, g int) string { return fmt.Sprintf("%sdeleting/%03d", pruneDir(id), g) }
func deletedKey(id string, g int) string  { return fmt.Sprintf("%sdeleted/%03d", pruneDir(id), g) }
func keepDir(id string, g int) string     { return fmt.Sprintf("%skeep/%03d/", pruneDir(id), g) }

// SavePrune writes p's state.
func (r *Repository) SavePrune(ctx context.Context, p *PruneState) error {
	if err := checkName("prune", p.ID); err != nil {
		return err
	}
	if err := CheckShards(p.Shards); err != nil {
		return err
	}
	p.V = 1
	if err := r.putSealedJSON(ctx, pruneKey(p.ID), p); err != nil {
		return fmt.Errorf("save prune %s: %w", p.ID, err)
	}
	return nil
}

// LoadPrune reads prune id's state; a missing one wraps store.ErrNotFound.
func (r *Repository) LoadPrune(ctx context.Context, id string) (*PruneState, error) {
	if err := checkName("prune", id); err != nil {
		return nil, err
	}
	var p PruneState
	if err := r.getSealedJSON(ctx, pruneKey(id), &p); err != nil {
		return nil, fmt.Errorf("prune %s: %w", id, err)
	}
	if p.ID != id || CheckShards(p.Shards) != nil {
		return nil, fmt.Errorf("prune %s: state names prune %q with %d shards", id, p.ID, p.Shards)
	}
	return &p, nil
}

// PruneIDs lists the prunes that have a state, done ones included.
func (r *Repository) PruneIDs(ctx context.Context) ([]string, error) {
	var ids []string
	for info, err := range r.st.List(ctx, PrunesPrefix) {
		if err != nil {
			return nil, fmt.Errorf("list prunes: %w", err)
		}
		if id := strings.TrimPrefix(info.Key, PrunesPrefix); nameRE.MatchString(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// RemovePrune removes prune id's state and everything under prune/<id>/.
// Only a done prune may be removed: backups rely on an active one's
// objects.
func (r *Repository) RemovePrune(ctx context.Context, id string) error {
	if err := r.RemovePruneData(ctx, id); err != nil {
		return err
	}
	if err := r.st.Delete(ctx, pruneKey(id)); err != nil {
		return fmt.Errorf("remove prune %s: %w", id, err)
	}
	return nil
}

// RemovePruneData removes everything under prune/<id>/: its lists, markers
// and keep records. Call it only once the prune's state says done.
func (r *Repository) RemovePruneData(ctx context.Context, id string) error {
	if err := checkName("prune", id); err != nil {
		return err
	}
	for info, err := range r.st.List(ctx, pruneDir(id)) {
		if err != nil {
			return fmt.Errorf("remove prune %s: %w", id, err)
		}
		if err := r.st.Delete(ctx, info.Key); err != nil {
			return fmt.Errorf("remove prune %s: %w", id, err)
		}
	}
	return nil
}

// PutPruneSnapshots stores a list of snapshot IDs under prune/<id>/<name>
// ("snapshots": those the prune marked from, "late": those committed
// while it waited).
func (r *Repository) PutPruneSnapshots(ctx context.Context, id, name string, ids []string) error {
	if ids == nil {
		ids = []string{}
	}
	return r.putSealedJSON(ctx, pruneListKey(id, name), ids)
}

// LoadPruneSnapshots reads a list PutPruneSnapshots stored.
func (r *Repository) LoadPruneSnapshots(ctx context.Context, id, name string) ([]string, error) {
	var ids []string
	if err := r.getSealedJSON(ctx, pruneListKey(id, name), &ids); err != nil {
		return nil, err
	}
	for _, s := range ids {
		if !validSnapshotID(s) {
			return nil, fmt.Errorf("prune %s: %s names %q, not a snapshot ID", id, name, s)
		}
	}
	return ids, nil
}

// Condemned is a chunk a prune condemned, with the size it had when listed.
type Condemned struct {
	ID   chunk.ID
	Size int64
}

// condemnedEntry is the size of one Condemned in a list: the ID, then the
// size as a little-endian uint64.
const condemnedEntry = chunk.IDSize + 8

// PutCondemned stores shard g's condemned list of prune id under token,
// sorted by ID.
func (r *Repository) PutCondemned(ctx context.Context, id string, g int, token string, list []Condemned) error {
	if err := checkName("token", token); err != nil {
		return err
	}
	slices.SortFunc(list, func(a, b Condemned) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	buf := make([]byte, 0, len(list)*condemnedEntry)
	for _, c := range list {
		buf = append(buf, c.ID[:]...)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(c.Size))
	}
	return r.putSealed(ctx, condemnedKey(id, g, token), buf)
}

// LoadCondemned reads shard g's condemned list of prune id stored under
// token, sorted by ID.
func (r *Repository) LoadCondemned(ctx context.Context, id string, g int, token string) ([]Condemned, error) {
	if err := checkName("token", token); err != nil {
		return nil, err
	}
	buf, err := r.getSealed(ctx, condemnedKey(id, g, token))
	if err != nil {
		return nil, err
	}
	if len(buf)%condemnedEntry != 0 {
		return nil, fmt.Errorf("prune %s: condemned list of shard %d holds %d bytes, not whole entries", id, g, len(buf))
	}
	list := make([]Condemned, len(buf)/condemnedEntry)
	for i := range list {
		e := buf[i*condemnedEntry:]
		copy(list[i].ID[:], e[:chunk.IDSize])
		list[i].Size = int64(binary.LittleEndian.Uint64(e[chunk.IDSize:condemnedEntry]))
		if i > 0 && bytes.Compare(list[i-1].ID[:], list[i].ID[:]) >= 0 {
			return nil, fmt.Errorf("prune %s: condemned list of shard %d is not sorted", id, g)
		}
	}
	return list, nil
}

// MarkDeleting records that shard g of prune id is being deleted: an
// empty object, written before the sweep lists the keep records.
func (r *Repository) MarkDeleting(ctx context.Context, id string, g int) error {
	if err := r.st.Put(ctx, deletingKey(id, g), nil); err != nil {
		return fmt.Errorf("prune %s: mark shard %d deleting: %w", id, g, err)
	}
	return nil
}

// Deleting reports whether shard g of prune id has begun deleting.
func (r *Repository) Deleting(ctx context.Context, id string, g int) (bool, error) {
	return r.exists(ctx, deletingKey(id, g))
}

// ShardResult is what the sweep of one shard did.
type ShardResult struct {
	Deleted      int64 `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	Kept         int64 `json:"kept"`
}

// MarkDeleted records that shard g of prune id is swept, with what was done.
func (r *Repository) MarkDeleted(ctx context.Context, id string, g int, res ShardResult) error {
	if err := r.putSealedJSON(ctx, deletedKey(id, g), res); err != nil {
		return fmt.Errorf("prune %s: mark shard %d deleted: %w", id, g, err)
	}
	return nil
}

// ShardDeleted returns what the sweep of shard g recorded, and false when
// the shard is not swept yet.
func (r *Repository) ShardDeleted(ctx context.Context, id string, g int) (ShardResult, bool, error) {
	var res ShardResult
	err := r.getSealedJSON(ctx, deletedKey(id, g), &res)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return res, false, nil
	case err != nil:
		return res, false, err
	}
	return res, true, nil
}

// KeepRecords lists the chunks of shard g that backups asked prune id to
// keep.
func (r *Repository) KeepRecords(ctx context.Context, id string, g int) (map[chunk.ID]bool, error) {
	keep := make(map[chunk.ID]bool)
	dir := keepDir(id, g)
	for info, err := range r.st.List(ctx, dir) {
		if err != nil {
			return nil, fmt.Errorf("prune %s: list keep records of shard %d: %w", id, g, err)
		}
		if cid, err := chunk.ParseID(strings.TrimPrefix(info.Key, dir)); err == nil {
			keep[cid] = true
		}
	}
	return keep, nil
}

// putKeep asks prune id to keep chunk cid of shard g.
func (r *Repository) putKeep(ctx context.Context, id string, g int, cid chunk.ID) error {
	if err := r.st.Put(ctx, keepDir(id, g)+cid.String(), nil); err != nil {
		return fmt.Errorf("ask prune %s to keep chunk %s: %w", id, cid, err)
	}
	return nil
}

// ChunkInfo is one stored chunk object, as a listing finds it.
type ChunkInfo struct {
	ID   chunk.ID
	Size int64
}

// ListShard yields the chunk objects stored in shard g of n, in no
// particular order. Objects under chunks/ whose key is not a chunk's are
// skipped.
func (r *Repository) ListShard(ctx context.Context, g, n int) iter.Seq2[ChunkInfo, error] {
	return func(yield func(ChunkInfo, error) bool) {
		for _, prefix := range ShardPrefixes(g, n) {
			for info, err := range r.st.List(ctx, prefix) {
				if err != nil {
					yield(ChunkInfo{}, fmt.Errorf("list %s: %w", prefix, err))
					return
				}
				id, err := chunk.ParseID(strings.TrimPrefix(info.Key, prefix))
				if err != nil || !strings.HasPrefix(id.String(), prefix[len(ChunksPrefix):len(ChunksPrefix)+2]) {
					continue
				}
				if !yield(ChunkInfo{ID: id, Size: info.Size}, nil) {
					return
				}
			}
		}
	}
}

// DeleteChunk removes chunk id's object. Only a prune's sweep calls it,
// under the protocol of docs/format.md section 10.
func (r *Repository) DeleteChunk(ctx context.Context, id chunk.ID) error {
	if err := r.st.Delete(ctx, ChunkKey(id)); err != nil {
		return fmt.Errorf("delete chunk %s: %w", id, err)
	}
	return nil
}

// ShardRefs reads the chunks of each snapshot in ids and returns those in
// shard g of n, each with the stored size the first snapshot naming it
// recorded. A snapshot stored as directory objects names those objects
// too; they are walked, not assembled, and an object named by several
// snapshots (an unchanged directory) is read once. A snapshot that is
// gone (forgotten since it was listed) names nothing. A failure that is
// not the snapshot's (the store unavailable, ctx ended, no key to read
// it) stops ShardRefs with that error, to be tried again; for a snapshot
// that cannot be read, bad decides: its error stops ShardRefs, nil skips
// the snapshot.
func (r *Repository) ShardRefs(ctx context.Context, ids []string, g, n int, bad func(id string, err error) error) (map[chunk.ID]int64, error) {
	refs := make(map[chunk.ID]int64)
	add := func(hash string, size int64) {
		id, err := chunk.ParseID(hash)
		if err != nil || ShardOf(id, n) != g {
			return
		}
		if _, ok := refs[id]; !ok {
			refs[id] = size
		}
	}
	walked := &treeWalk{objects: make(map[chunk.ID]*walkedTree), inShard: func(hash string) bool {
		id, err := chunk.ParseID(hash)
		return err == nil && ShardOf(id, n) == g
	}}
	for _, sid := range ids {
		s, err := r.loadSnapshot(ctx, sid, manifest.DecodeChunksReader, false)
		if err == nil && s.Stored() {
			err = r.walkTree(ctx, s.Root.TreeRef, walked, add)
		}
		switch {
		case errors.Is(err, ErrSnapshotNotFound):
			continue
		case err != nil && (errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrLocked) || ctx.Err() != nil):
			return nil, fmt.Errorf("read snapshot %s: %w", sid, err)
		}
		if err != nil {
			if err := bad(sid, err); err != nil {
				return nil, err
			}
			continue
		}
		for _, c := range s.Chunks {
			if !c.Zero {
				add(c.Hash, c.StoredSize)
			}
		}
	}
	return refs, nil
}

// treeWalk is what ShardRefs learned of each directory object it read:
// what it names (other objects, and the chunks of the shard), or why it
// could not be read. Each snapshot walks its whole tree through it, but
// reads from the store only the objects no earlier walk read.
type treeWalk struct {
	objects map[chunk.ID]*walkedTree
	inShard func(hash string) bool
}

// walkedTree is one directory object as a treeWalk knows it.
type walkedTree struct {
	children []manifest.TreeRef
	chunks   []manifest.Chunk // those in the shard: hash and stored size
	err      error
}

// walkTree calls add with the directory object root, every object below
// it and every chunk of the shard they name. It fails with the error of
// the first object that cannot be read: the snapshot is unreadable. A
// failure that may pass (the store unavailable, ctx ended) is not
// remembered.
func (r *Repository) walkTree(ctx context.Context, root manifest.TreeRef, w *treeWalk, add func(hash string, size int64)) error {
	if root.ID == "" {
		return nil
	}
	seen := make(map[chunk.ID]bool) // this walk's
	level := []manifest.TreeRef{root}
	for len(level) > 0 {
		ids := make([]chunk.ID, len(level))
		var toRead []int
		for i, ref := range level {
			id, err := chunk.ParseID(ref.ID)
			if err != nil {
				return fmt.Errorf("%w: directory object %q", manifest.ErrInvalid, ref.ID)
			}
			ids[i] = id
			if w.objects[id] == nil {
				toRead = append(toRead, i)
			}
		}
		read := make([]*walkedTree, len(toRead))
		_ = r.parallel(ctx, len(toRead), func(ctx context.Context, j int) error {
			read[j] = r.readWalked(ctx, level[toRead[j]].ID, w.inShard)
			return nil
		})
		for j, i := range toRead {
			if err := read[j].err; err != nil && (errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrLocked) || ctx.Err() != nil) {
				return err
			}
			w.objects[ids[i]] = read[j]
		}
		var next []manifest.TreeRef
		for i, ref := range level {
			add(ref.ID, ref.StoredSize)
			o := w.objects[ids[i]]
			if o.err != nil {
				return o.err
			}
			for _, c := range o.chunks {
				add(c.Hash, c.StoredSize)
			}
			for _, child := range o.children {
				id, err := chunk.ParseID(child.ID)
				if err != nil {
					return fmt.Errorf("%w: directory object %q", manifest.ErrInvalid, child.ID)
				}
				if !seen[id] {
					seen[id] = true
					next = append(next, child)
				}
			}
		}
		level = next
	}
	return nil
}

// readWalked reads the directory object ref for a treeWalk.
func (r *Repository) readWalked(ctx context.Context, ref string, inShard func(string) bool) *walkedTree {
	raw, err := r.loadTree(ctx, ref, nil) // each object once per ShardRefs: bounded by the repository's objects
	var entries []manifest.TreeEntry
	if err == nil {
		entries, err = manifest.DecodeTree(raw)
	}
	if err != nil {
		return &walkedTree{err: err}
	}
	o := &walkedTree{}
	manifest.EachEntry(entries, func(e *manifest.TreeEntry) {
		for _, x := range e.Content {
			if !x.Zero && inShard(x.Hash) {
				o.chunks = append(o.chunks, manifest.Chunk{Hash: x.Hash, StoredSize: x.StoredSize})
			}
		}
		if e.ID != "" {
			o.children = append(o.children, e.TreeRef)
		}
	})
	return o
}
