package repository

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// A files-mode snapshot is stored as a tree of directory objects
// (manifest.SplitTrees, docs/format.md section 5.4.1). A directory object is
// kept under its chunk ID among the chunks, sealed as metadata: named by
// the repository's chunk ID of its bytes (a keyed MAC in an encrypted
// repository, so names tell nothing of the listings), readable only with
// the metadata key, and counted by prune and check like the chunks a
// snapshot names (Snapshot.Trees). A directory that did not change is the
// same object in the next snapshot: it is checked like a reused chunk
// (CheckReuse: protected from prunes, stored again if damaged) and not
// written again.

// treeWorkers is how many directory objects are read or written at once.
const treeWorkers = 16

// treeBatchBytes is about how many bytes of directory objects a commit
// holds before it stores them.
const treeBatchBytes = 8 << 20

// encodeSnapshot returns the stored form of the valid snapshot s and its
// manifest's JSON: for files mode, the snapshot as a tree, after storing
// every directory object the repository does not hold whole; otherwise s
// itself, flat.
func (r *Repository) encodeSnapshot(ctx context.Context, s *manifest.Snapshot) (*manifest.Snapshot, []byte, error) {
	if s.Mode != manifest.ModeFiles {
		js, err := manifest.Encode(s)
		return s, js, err
	}
	ts := r.newTreeStore(ctx)
	stored, err := s.SplitTrees(ts.put)
	if errors.Is(err, manifest.ErrNotPreorder) {
		js, err := manifest.Encode(s) // written in another order: kept flat
		return s, js, err
	}
	if err != nil {
		return nil, nil, err
	}
	if err := ts.flush(); err != nil {
		return nil, nil, err
	}
	js, err := manifest.EncodeStored(stored)
	return stored, js, err
}

// A TreeWriter stores a files-mode snapshot's entries in the repository as
// directory objects as they come (manifest.TreeWriter), so that a backup
// never holds its tree whole. Close returns the root; the snapshot it
// belongs to is then saved in stored form (SaveSnapshot).
type TreeWriter struct {
	*manifest.TreeWriter
	store *treeStore
}

// NewTreeWriter returns a TreeWriter of snapshot id's entries. Call it as
// a registered writer: directory objects it names again rather than store
// are protected from prunes, as MissingChunks protects chunks.
func (r *Repository) NewTreeWriter(ctx context.Context, id string) *TreeWriter {
	ts := r.newTreeStore(ctx)
	return &TreeWriter{TreeWriter: manifest.NewTreeWriter(id, manifest.DefaultTreeOptions, ts.put), store: ts}
}

// Close lists the directories still open, stores what is left to store,
// and returns the root's entry.
func (w *TreeWriter) Close() (manifest.TreeEntry, error) {
	root, err := w.TreeWriter.Close()
	if err != nil {
		return root, err
	}
	return root, w.store.flush()
}

// treeStore stores the directory objects a tree's writer puts, a batch at
// a time, so that a large tree's are not all held at once. Each distinct
// object is sealed when put, or, when this process read it whole lately
// (the parent's, typically), kept as its bytes with its known stored size
// and sealed only if it must be stored again after all (MissingChunks:
// protected from prunes, then looked up in the store, since an object
// this process read a moment ago may have been deleted by a prune).
type treeStore struct {
	r     *Repository
	ctx   context.Context
	sizes map[chunk.ID]int64 // every distinct object's stored size
	batch []treeObject
	bytes int // what the batch holds
}

// treeObject is a directory object waiting in a treeStore's batch.
type treeObject struct {
	id          chunk.ID
	sealed, raw []byte
}

func (r *Repository) newTreeStore(ctx context.Context) *treeStore {
	return &treeStore{r: r, ctx: ctx, sizes: make(map[chunk.ID]int64)}
}

// put names the directory object raw, holding it to be stored unless it
// was put before.
func (t *treeStore) put(raw []byte) (manifest.TreeRef, error) {
	r := t.r
	id, err := r.ChunkID(raw)
	if err != nil {
		return manifest.TreeRef{}, err
	}
	size, ok := t.sizes[id]
	if !ok {
		o := treeObject{id: id, raw: raw}
		if size, ok = r.recentlyIntact(id); !ok {
			if o.sealed, err = r.sealMetaAs(id, raw, ChunkKey(id)); err != nil {
				return manifest.TreeRef{}, err
			}
			o.raw, size = nil, int64(len(o.sealed))
		}
		t.sizes[id] = size
		t.batch = append(t.batch, o)
		if t.bytes += len(o.raw) + len(o.sealed); t.bytes >= treeBatchBytes {
			if err := t.flush(); err != nil {
				return manifest.TreeRef{}, err
			}
		}
	}
	return manifest.TreeRef{ID: id.String(), StoredSize: size}, nil
}

// flush stores the objects of the batch the repository does not hold
// whole.
func (t *treeStore) flush() error {
	r := t.r
	refs := make([]manifest.Chunk, len(t.batch))
	for i, o := range t.batch {
		refs[i] = manifest.Chunk{Hash: o.id.String(), StoredSize: t.sizes[o.id]}
	}
	missing, err := r.MissingChunks(t.ctx, refs)
	if err != nil {
		return fmt.Errorf("directory objects: %w", err)
	}
	put := make([]treeObject, 0, len(missing))
	for i := range missing {
		put = append(put, t.batch[i])
	}
	t.batch, t.bytes = t.batch[:0], 0
	return r.parallel(t.ctx, len(put), func(ctx context.Context, i int) error {
		o := put[i]
		if o.sealed == nil {
			sealed, err := r.sealMetaAs(o.id, o.raw, ChunkKey(o.id))
			if err != nil {
				return err
			}
			o.sealed = sealed
		}
		if err := r.PutChunk(ctx, o.id, o.sealed); err != nil {
			return fmt.Errorf("directory object: %w", err)
		}
		return r.clearDamageIfRecorded(ctx, o.id)
	})
}

// clearDamageIfRecorded clears a damage record of the object id, just
// stored again whole.
func (r *Repository) clearDamageIfRecorded(ctx context.Context, id chunk.ID) error {
	damaged, err := r.DamageRecorded(ctx, id)
	if err != nil || !damaged {
		return err
	}
	return r.ClearDamage(ctx, id)
}

// assemble reads the directory objects of s, a snapshot in stored tree
// form, and fills in its files and chunks (manifest.Snapshot.Assemble),
// then validates it.
func (r *Repository) assemble(ctx context.Context, s *manifest.Snapshot) error {
	if err := s.Assemble(r.treeLoader(ctx, s.ID)); err != nil {
		return err
	}
	return s.Validate()
}

// LoadListing reads the snapshot with the exact id as a backup reads its
// parent: its header, and its entries as a manifest.Listing, which holds a
// tree of directory objects compressed rather than assembled. A snapshot
// stored flat is validated whole; a tree's entries are checked as they are
// walked.
func (r *Repository) LoadListing(ctx context.Context, id string) (*manifest.Snapshot, *manifest.Listing, error) {
	s, err := r.loadSnapshot(ctx, id, manifest.DecodeStoredReader, false)
	if err != nil {
		return nil, nil, err
	}
	if !s.Stored() {
		if s.Mode != manifest.ModeFiles {
			return nil, nil, fmt.Errorf("load snapshot %s: a %s snapshot has no listing", id, s.Mode)
		}
		return s, s.WholeListing(), nil
	}
	l, err := s.LoadListing(r.treeLoader(ctx, s.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	return s, l, nil
}

// treeLoader returns what reads the directory objects of snapshot id for
// manifest.Snapshot.Assemble and LoadListing: in parallel, what they may
// hold together bounded before each is read whole (after its header and
// size are peeked), not after.
func (r *Repository) treeLoader(ctx context.Context, id string) func(refs []manifest.TreeRef) ([][]byte, error) {
	var read atomic.Int64
	reserve := func(n int64) error {
		if read.Add(n) > manifest.MaxSize {
			return fmt.Errorf("%w: snapshot %s: its directory objects hold more than %d bytes", manifest.ErrTooLarge, id, manifest.MaxSize)
		}
		return nil
	}
	return func(refs []manifest.TreeRef) ([][]byte, error) {
		raws := make([][]byte, len(refs))
		err := r.parallel(ctx, len(refs), func(ctx context.Context, i int) error {
			raw, err := r.loadTree(ctx, refs[i].ID, reserve)
			raws[i] = raw
			return err
		})
		return raws, err
	}
}

// ErrTreeMissing is wrapped when a directory object a snapshot names is
// not in the repository.
var ErrTreeMissing = errors.New("repository: directory object missing")

// loadTree reads and checks the directory object named ref and returns
// its bytes, remembering whether it was intact (noteTree).
func (r *Repository) loadTree(ctx context.Context, ref string, reserve func(int64) error) ([]byte, error) {
	id, err := chunk.ParseID(ref)
	if err != nil {
		return nil, fmt.Errorf("directory object %q: %w", ref, err)
	}
	raw, size, err := r.readTree(ctx, id, reserve)
	r.noteTree(id, size, err == nil)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("directory object %s: %w", id, ErrTreeMissing)
	}
	if err != nil {
		err = fmt.Errorf("directory object %s: %w", id, err)
		r.noteDamagedTree(ctx, id, err)
		return nil, err
	}
	return raw, nil
}

// readTree reads and decodes the directory object id, and returns its
// bytes and stored size. It is decoded whole, as a chunk is: getMeta bounds
// it by manifest.MaxSize, less than a chunk's MaxRawSize.
func (r *Repository) readTree(ctx context.Context, id chunk.ID, reserve func(int64) error) ([]byte, int64, error) {
	key := ChunkKey(id)
	obj, h, err := r.getMeta(ctx, key, reserve)
	size := int64(len(obj))
	switch {
	case err != nil:
		return nil, 0, err
	case h.ID != id:
		return nil, 0, &chunk.CorruptError{ID: id, Reason: fmt.Sprintf("header names %s", h.ID), Err: chunk.ErrCorrupt}
	case r.config.Encrypted():
		raw, err := chunk.OpenMeta(nil, id, obj, r.creds.Write, key)
		return raw, size, err
	}
	raw, err := chunk.Open(nil, id, obj)
	return raw, size, err
}

// intactFor is how long the stored size of a directory object read whole
// is remembered: a backup that read it in its parent snapshot names it
// again without sealing it to learn its size (it still asks the store
// whether it is there: MissingChunks).
const intactFor = 10 * time.Minute

// maxIntact bounds how many directory objects a process remembers as
// intact; past it, it forgets them all.
const maxIntact = 1 << 20

// intactTree is a directory object read whole: when, and its stored size.
type intactTree struct {
	at   time.Time
	size int64
}

// noteTree remembers whether the directory object id, of stored size
// size, was just read whole (intact) or not.
func (r *Repository) noteTree(id chunk.ID, size int64, intact bool) {
	sh := r.shared
	sh.intactMu.Lock()
	defer sh.intactMu.Unlock()
	if !intact {
		delete(sh.intact, id)
		return
	}
	if sh.intact == nil || len(sh.intact) >= maxIntact {
		sh.intact = make(map[chunk.ID]intactTree)
	}
	sh.intact[id] = intactTree{at: time.Now(), size: size}
}

// recentlyIntact reports whether the directory object id was read whole
// within intactFor, and its stored size then.
func (r *Repository) recentlyIntact(id chunk.ID) (int64, bool) {
	sh := r.shared
	sh.intactMu.Lock()
	defer sh.intactMu.Unlock()
	t, ok := sh.intact[id]
	return t.size, ok && time.Since(t.at) < intactFor
}

// noteDamagedTree records a directory object found damaged, so that the
// next backup of its directory stores it again rather than name it (as
// for a chunk: CheckReuse). Recording is best effort: a process that
// cannot write still reports the damage through err.
func (r *Repository) noteDamagedTree(ctx context.Context, id chunk.ID, err error) {
	if errors.Is(err, chunk.ErrCorrupt) {
		_ = r.RecordDamage(ctx, Damage{Chunk: id.String(), State: "damaged", Problem: err.Error(), FoundBy: FoundByLoad})
	}
}

// getMeta reads the metadata object under key, after checking from its
// header and length that it holds no more than manifest.MaxSize bytes, and
// that reserve, if set, has room for them.
func (r *Repository) getMeta(ctx context.Context, key string, reserve func(int64) error) ([]byte, chunk.Header, error) {
	if err := r.checkMeta("read snapshots"); err != nil {
		return nil, chunk.Header{}, err
	}
	prefix, info, err := r.st.Peek(ctx, key, metaPeek)
	if err != nil {
		return nil, chunk.Header{}, err
	}
	h, err := chunk.ParseHeader(prefix)
	if err != nil {
		return nil, h, err
	}
	if h.RawLen > manifest.MaxSize || info.Size > manifest.MaxSize+int64(h.HeaderLen) {
		return nil, h, fmt.Errorf("%w: the object holds %d bytes and claims %d bytes of metadata, more than the %d this build reads",
			manifest.ErrTooLarge, info.Size, h.RawLen, manifest.MaxSize)
	}
	if reserve != nil {
		if err := reserve(info.Size); err != nil {
			return nil, h, err
		}
	}
	if int64(len(prefix)) == info.Size {
		return prefix, h, nil // all of it: most directory objects and headers
	}
	obj, err := r.st.Get(ctx, key) // not found if deleted since the peek
	return obj, h, err
}

// metaPeek is how much of a metadata object getMeta reads first: enough
// for most directory objects and snapshot headers to be read in one
// request, little enough to read at once whatever the object claims.
const metaPeek = 64 << 10

// parallel calls do(ctx, i) for i in [0, n) on up to treeWorkers
// goroutines and returns the first error, after which it starts no more.
func (r *Repository) parallel(ctx context.Context, n int, do func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	for range min(treeWorkers, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := do(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
