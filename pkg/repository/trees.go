package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// A files-mode snapshot is stored as a tree of directory objects
// (manifest.SplitTrees, docs/format.md section 5.4). A directory object is
// kept under its chunk ID among the chunks, sealed as metadata: named by
// the repository's chunk ID of its JSON (a keyed MAC in an encrypted
// repository, so names tell nothing of the listings), readable only with
// the metadata key, and counted by prune and check like the chunks a
// snapshot names (Snapshot.Trees). A directory that did not change is the
// same object in the next snapshot: it is checked like a reused chunk
// (CheckReuse: protected from prunes, stored again if damaged) and not
// written again.

// treeWorkers is how many directory objects are read or written at once.
const treeWorkers = 16

// encodeSnapshot returns the stored form of the valid snapshot s and its
// manifest's JSON: for files mode, the snapshot as a tree, after storing
// every directory object the repository does not hold whole; otherwise s
// itself, flat.
func (r *Repository) encodeSnapshot(ctx context.Context, s *manifest.Snapshot) (*manifest.Snapshot, []byte, error) {
	if s.Mode != manifest.ModeFiles {
		js, err := manifest.Encode(s)
		return s, js, err
	}
	objects := make(map[chunk.ID][]byte)
	var refs []manifest.Chunk
	stored, err := s.SplitTrees(func(raw []byte) (manifest.TreeRef, error) {
		id, err := r.ChunkID(raw)
		if err != nil {
			return manifest.TreeRef{}, err
		}
		obj, ok := objects[id]
		if !ok {
			if obj, err = r.sealMeta(raw, ChunkKey(id)); err != nil {
				return manifest.TreeRef{}, err
			}
			objects[id] = obj
			refs = append(refs, manifest.Chunk{Hash: id.String(), StoredSize: int64(len(obj))})
		}
		return manifest.TreeRef{ID: id.String(), StoredSize: int64(len(obj))}, nil
	})
	if errors.Is(err, manifest.ErrNotPreorder) {
		js, err := manifest.Encode(s) // written in another order: kept flat
		return s, js, err
	}
	if err != nil {
		return nil, nil, err
	}
	missing, err := r.MissingChunks(ctx, refs)
	if err != nil {
		return nil, nil, fmt.Errorf("directory objects: %w", err)
	}
	put := make([]chunk.ID, 0, len(missing))
	for i := range missing {
		id, _ := chunk.ParseID(refs[i].Hash)
		put = append(put, id)
	}
	if err := r.parallel(ctx, len(put), func(ctx context.Context, i int) error {
		if err := r.PutChunk(ctx, put[i], objects[put[i]]); err != nil {
			return fmt.Errorf("directory object: %w", err)
		}
		return r.clearDamageIfRecorded(ctx, put[i])
	}); err != nil {
		return nil, nil, err
	}
	js, err := manifest.EncodeStored(stored)
	return stored, js, err
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
	err := s.Assemble(func(refs []manifest.TreeRef) ([][]byte, error) {
		raws := make([][]byte, len(refs))
		err := r.parallel(ctx, len(refs), func(ctx context.Context, i int) error {
			raw, err := r.loadTree(ctx, refs[i].ID)
			raws[i] = raw
			return err
		})
		return raws, err
	})
	if err != nil {
		return err
	}
	return s.Validate()
}

// ErrTreeMissing is wrapped when a directory object a snapshot names is
// not in the repository.
var ErrTreeMissing = errors.New("repository: directory object missing")

// loadTree reads and checks the directory object named ref and returns
// its JSON.
func (r *Repository) loadTree(ctx context.Context, ref string) ([]byte, error) {
	id, err := chunk.ParseID(ref)
	if err != nil {
		return nil, fmt.Errorf("directory object %q: %w", ref, err)
	}
	rd, err := r.openMeta(ctx, ChunkKey(id), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("directory object %s: %w", id, ErrTreeMissing)
	}
	if err != nil {
		err = fmt.Errorf("directory object %s: %w", id, err)
		r.noteDamagedTree(ctx, id, err)
		return nil, err
	}
	defer rd.Close()
	raw, err := io.ReadAll(rd)
	if err != nil {
		err = fmt.Errorf("directory object %s: %w", id, err)
		r.noteDamagedTree(ctx, id, err)
		return nil, err
	}
	return raw, nil
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

// openMeta reads the metadata object under key, whose header must name
// want, and returns a reader of its raw bytes that checks them as they
// end. What it may cost is bounded before anything is read whole: an
// object whose header claims more than manifest.MaxSize bytes, or that is
// larger than that, is refused. A missing object is store.ErrNotFound.
func (r *Repository) openMeta(ctx context.Context, key string, want chunk.ID) (io.ReadCloser, error) {
	obj, h, err := r.getMeta(ctx, key)
	if err != nil {
		return nil, err
	}
	if h.ID != want {
		return nil, &chunk.CorruptError{ID: want, Reason: fmt.Sprintf("header names %s", h.ID), Err: chunk.ErrCorrupt}
	}
	if r.config.Encrypted() {
		return chunk.OpenMetaStream(h.ID, obj, manifest.MaxSize, r.creds.Write, key)
	}
	return chunk.OpenStream(h.ID, obj, manifest.MaxSize)
}

// getMeta reads the metadata object under key, after checking from its
// header and length that it holds no more than manifest.MaxSize bytes.
func (r *Repository) getMeta(ctx context.Context, key string) ([]byte, chunk.Header, error) {
	if err := r.checkMeta("read snapshots"); err != nil {
		return nil, chunk.Header{}, err
	}
	prefix, info, err := r.st.Peek(ctx, key, chunk.MaxHeaderPrefix)
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
	obj, err := r.st.Get(ctx, key) // not found if deleted since the peek
	return obj, h, err
}

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
