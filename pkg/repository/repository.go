// Package repository is the bulkbackup repository format over a store.Store:
// the key layout, idempotent content-addressed chunk writes, verified chunk
// reads, and snapshots committed last. docs/format.md specifies the layout.
package repository

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// Version is the repository layout version this package writes and reads.
const Version = 1

// Keys and prefixes of the layout.
const (
	ConfigKey        = "config"
	ChunksPrefix     = "chunks/"
	SnapshotsPrefix  = "snapshots/"
	HeadersPrefix    = "headers/"
	snapshotSealerLv = chunk.LevelDefault
)

// Sentinel errors.
var (
	// ErrNotRepository means the store holds no repository config.
	ErrNotRepository = errors.New("repository: no repository here")
	// ErrSnapshotNotFound means no snapshot matches a reference.
	ErrSnapshotNotFound = errors.New("repository: snapshot not found")
	// ErrAmbiguous means an ID prefix matches more than one snapshot.
	ErrAmbiguous = errors.New("repository: snapshot prefix is ambiguous")
	// ErrSnapshotExists means a different snapshot already has the ID.
	ErrSnapshotExists = errors.New("repository: snapshot already exists")
)

// Config is the repository's config object, written once at creation.
type Config struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Hash    string    `json:"hash"`
}

// Repository reads and writes the format on a store. It is safe for
// concurrent use.
type Repository struct {
	st     store.Store
	config Config
	timing Timing
	guard  *guard

	sealerOnce sync.Once
	sealer     *chunk.Sealer
	sealerErr  error
}

// OpenOptions tunes Open.
type OpenOptions struct {
	// Create makes Open initialise an empty store as a new repository.
	Create bool
	// Timing is the prune protocol's timing; zero means DefaultTiming.
	// Only tests that run every party in one process change it.
	Timing Timing
}

// Open opens the repository on st, creating it when opts.Create is set and
// the store has none yet. It fails with ErrNotRepository otherwise.
func Open(ctx context.Context, st store.Store, opts OpenOptions) (*Repository, error) {
	if opts.Timing == (Timing{}) {
		opts.Timing = DefaultTiming
	}
	if err := opts.Timing.validate(); err != nil {
		return nil, err
	}
	data, err := st.Get(ctx, ConfigKey)
	switch {
	case errors.Is(err, store.ErrNotFound) && opts.Create:
		return create(ctx, st, opts.Timing)
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), ErrNotRepository)
	case err != nil:
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("open repository %s: config: %w", st.Location(), err)
	}
	if cfg.Version != Version || cfg.Hash != "sha256" {
		return nil, fmt.Errorf("open repository %s: version %d with hash %q is not supported (this build reads version %d, sha256)",
			st.Location(), cfg.Version, cfg.Hash, Version)
	}
	return &Repository{st: st, config: cfg, timing: opts.Timing, guard: newGuard()}, nil
}

func create(ctx context.Context, st store.Store, timing Timing) (*Repository, error) {
	cfg := Config{Version: Version, ID: uuid.NewString(), Created: time.Now().UTC(), Hash: "sha256"}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := st.Put(ctx, ConfigKey, data); err != nil {
		return nil, fmt.Errorf("create repository %s: %w", st.Location(), err)
	}
	return &Repository{st: st, config: cfg, timing: timing, guard: newGuard()}, nil
}

// Config returns the repository's config.
func (r *Repository) Config() Config { return r.config }

// Ping checks that the repository answers: its config object is there.
func (r *Repository) Ping(ctx context.Context) error {
	if _, err := r.st.Stat(ctx, ConfigKey); err != nil {
		return fmt.Errorf("repository %s: %w", r.st.Location(), err)
	}
	return nil
}

// Timing returns the prune protocol's timing the repository was opened with.
func (r *Repository) Timing() Timing { return r.timing }

// Location names the repository for humans.
func (r *Repository) Location() string { return r.st.Location() }

// ChunkKey returns the store key of chunk id.
func ChunkKey(id chunk.ID) string {
	s := id.String()
	return ChunksPrefix + s[:2] + "/" + s
}

// ChunkState says what a repository holds under a chunk's key.
type ChunkState int

// Chunk states, from StatChunk.
const (
	// ChunkMissing: no object.
	ChunkMissing ChunkState = iota + 1
	// ChunkIntact: an object naming the chunk, exactly as long as its
	// header records.
	ChunkIntact
	// ChunkDamaged: an object that cannot hold the chunk: cut short or
	// extended, an unreadable header, or one naming another chunk.
	ChunkDamaged
	// ChunkUnchecked: a format 1 object with a compressed payload, whose
	// header does not record its length; only a caller that knows the
	// stored size from elsewhere (a manifest) can tell it is whole.
	ChunkUnchecked
)

func (s ChunkState) String() string {
	switch s {
	case ChunkMissing:
		return "missing"
	case ChunkIntact:
		return "intact"
	case ChunkDamaged:
		return "damaged"
	case ChunkUnchecked:
		return "unchecked"
	}
	return fmt.Sprintf("ChunkState(%d)", int(s))
}

// ChunkStat is what StatChunk found.
type ChunkStat struct {
	State ChunkState
	// Size is the object's length (0 when missing).
	Size int64
	// Problem says why a damaged object is damaged.
	Problem string
	// Recorded: a damage record names the chunk (RecordDamage); only
	// CheckReuse looks.
	Recorded bool
}

// Usable reports whether a backup may name the chunk without storing it
// again: it is intact, or it is unchecked and as long as recorded, the
// stored size a manifest gives for it (0 when none is known).
func (s ChunkStat) Usable(recorded int64) bool {
	return s.State == ChunkIntact || s.State == ChunkUnchecked && recorded > 0 && s.Size == recorded
}

// Reusable reports whether a backup may name the chunk without storing it
// again: Usable, and no damage record names it.
func (s ChunkStat) Reusable(recorded int64) bool { return s.Usable(recorded) && !s.Recorded }

// StatChunk reports whether chunk id is stored whole, reading only the
// object's header and length (store.Peek): a deleted chunk is
// ChunkMissing, a truncated one ChunkDamaged. It does not decode the data,
// so damage inside the payload is found only by reading it (verify).
func (r *Repository) StatChunk(ctx context.Context, id chunk.ID) (ChunkStat, error) {
	prefix, info, err := r.st.Peek(ctx, ChunkKey(id), chunk.MaxHeaderPrefix)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ChunkStat{State: ChunkMissing}, nil
	case err != nil:
		return ChunkStat{}, fmt.Errorf("stat chunk %s: %w", id, err)
	}
	st := ChunkStat{State: ChunkIntact, Size: info.Size}
	h, err := chunk.CheckSize(prefix, info.Size)
	switch {
	case errors.Is(err, chunk.ErrUnknownSize):
		st.State = ChunkUnchecked
	case err != nil:
		st.State, st.Problem = ChunkDamaged, err.Error()
	case h.ID != id:
		st.State, st.Problem = ChunkDamaged, fmt.Sprintf("header names chunk %s", h.ID)
	}
	return st, nil
}

// statWorkers is how many chunks MissingChunks checks at once: each check
// is one small request, mostly waiting on the store.
const statWorkers = 16

// MissingChunks checks, with CheckReuse, every stored chunk of chunks (the
// Chunks of a manifest) and returns the indexes of those a new snapshot
// must not name without storing them again: missing, damaged, unchecked
// at another size than recorded, or recorded as damaged. The others are
// protected from active prunes: call it as a registered writer. Chunks
// with the same hash are checked once.
func (r *Repository) MissingChunks(ctx context.Context, chunks []manifest.Chunk) (map[int]bool, error) {
	byHash := make(map[string][]int)
	for i, c := range chunks {
		if !c.Zero {
			byHash[c.Hash] = append(byHash[c.Hash], i)
		}
	}
	hashes := make(chan string)
	var (
		mu       sync.Mutex
		missing  = make(map[int]bool)
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(statWorkers, len(byHash)) {
		wg.Go(func() {
			for h := range hashes {
				idx := byHash[h]
				id, err := chunk.ParseID(h)
				var st ChunkStat
				if err == nil {
					st, err = r.CheckReuse(ctx, id)
				}
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = err
					cancel()
				case err == nil && !st.Reusable(chunks[idx[0]].StoredSize):
					for _, i := range idx {
						missing[i] = true
					}
				}
				mu.Unlock()
			}
		})
	}
	for h := range byHash {
		select {
		case hashes <- h:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(hashes)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return missing, nil
}

// PutChunk stores a sealed chunk object. Writing a chunk that is already
// stored rewrites the same bytes, so redelivered work is harmless.
func (r *Repository) PutChunk(ctx context.Context, id chunk.ID, sealed []byte) error {
	if err := r.st.Put(ctx, ChunkKey(id), sealed); err != nil {
		return fmt.Errorf("put chunk %s: %w", id, err)
	}
	return nil
}

// GetChunk reads chunk id, checks it and appends its raw bytes to dst. A
// damaged object yields an error matching chunk.ErrCorrupt that names the
// chunk; a missing one matches store.ErrNotFound.
func (r *Repository) GetChunk(ctx context.Context, id chunk.ID, dst []byte) ([]byte, error) {
	obj, err := r.st.Get(ctx, ChunkKey(id))
	if err != nil {
		return dst, fmt.Errorf("get chunk %s: %w", id, err)
	}
	return chunk.Open(dst, id, obj)
}

func (r *Repository) snapshotSealer() (*chunk.Sealer, error) {
	r.sealerOnce.Do(func() { r.sealer, r.sealerErr = chunk.NewSealer(snapshotSealerLv) })
	return r.sealer, r.sealerErr
}

func snapshotKey(id string) string { return SnapshotsPrefix + id }

// headerKey is where a snapshot's header (its manifest without chunks and
// files) is kept, so that listing snapshots does not read whole manifests.
func headerKey(id string) string { return HeadersPrefix + id }

// NewSnapshotID returns a fresh random snapshot ID: 32 hex digits.
func NewSnapshotID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

// SaveSnapshot commits a snapshot by writing its manifest; call it only after
// every chunk it names is stored. Saving the same snapshot again (a retried
// commit of the same job) is a no-op; saving a different snapshot under an
// existing ID fails with ErrSnapshotExists, so committed snapshots are never
// overwritten.
func (r *Repository) SaveSnapshot(ctx context.Context, s *manifest.Snapshot) error {
	if !validSnapshotID(s.ID) {
		return fmt.Errorf("save snapshot: invalid id %q", s.ID)
	}
	js, err := manifest.Encode(s)
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	existing, err := r.LoadSnapshot(ctx, s.ID)
	switch {
	case err == nil && existing.JobID != "" && existing.JobID == s.JobID:
		return nil
	case err == nil:
		return fmt.Errorf("save snapshot %s: %w", s.ID, ErrSnapshotExists)
	case !errors.Is(err, ErrSnapshotNotFound):
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	header, err := manifest.EncodeHeader(s)
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	sealer, err := r.snapshotSealer()
	if err != nil {
		return err
	}
	// The header first: a snapshot exists once its manifest does, and a
	// header left by a commit that stopped in between names no snapshot.
	if err := r.st.Put(ctx, headerKey(s.ID), sealer.Seal(nil, chunk.Sum(header), header)); err != nil {
		return fmt.Errorf("save snapshot %s: header: %w", s.ID, err)
	}
	obj := sealer.Seal(nil, chunk.Sum(js), js)
	if err := r.st.Put(ctx, snapshotKey(s.ID), obj); err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	return nil
}

// LoadSnapshot reads and validates the snapshot with the exact id.
func (r *Repository) LoadSnapshot(ctx context.Context, id string) (*manifest.Snapshot, error) {
	return r.loadSnapshot(ctx, id, manifest.DecodeReader)
}

// LoadSnapshotHeader reads what describes the snapshot with the exact id,
// without its chunks and files (manifest.DecodeHeader): from its header
// object, or, when that is missing (snapshots written before headers were)
// or cannot be read, from the manifest itself. It does not check that the
// manifest exists; list snapshots with SnapshotIDs.
func (r *Repository) LoadSnapshotHeader(ctx context.Context, id string) (*manifest.Snapshot, error) {
	if !validSnapshotID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrSnapshotNotFound)
	}
	if h, err := r.openSnapshot(ctx, headerKey(id), id, manifest.DecodeHeaderReader); err == nil {
		return h, nil
	}
	return r.loadSnapshot(ctx, id, manifest.DecodeHeaderReader)
}

func (r *Repository) loadSnapshot(ctx context.Context, id string, decode func(io.Reader) (*manifest.Snapshot, error)) (*manifest.Snapshot, error) {
	if !validSnapshotID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrSnapshotNotFound)
	}
	return r.openSnapshot(ctx, snapshotKey(id), id, decode)
}

// openSnapshot reads the sealed manifest (or header) of snapshot id under
// key and decodes it as a stream. What a manifest may cost is bounded
// before anything is read whole: an object whose header claims more than
// manifest.MaxSize of JSON, or that is larger than that, is refused.
func (r *Repository) openSnapshot(ctx context.Context, key, id string, decode func(io.Reader) (*manifest.Snapshot, error)) (*manifest.Snapshot, error) {
	prefix, info, err := r.st.Peek(ctx, key, chunk.MaxHeaderPrefix)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	h, err := chunk.ParseHeader(prefix)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	if h.RawLen > manifest.MaxSize || info.Size > manifest.MaxSize+int64(h.HeaderLen) {
		return nil, fmt.Errorf("load snapshot %s: %w: the object holds %d bytes and claims %d bytes of manifest, more than the %d this build reads",
			id, manifest.ErrTooLarge, info.Size, h.RawLen, manifest.MaxSize)
	}
	obj, err := r.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) { // forgotten since the peek
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	rd, err := chunk.OpenStream(h.ID, obj, manifest.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	defer rd.Close()
	s, err := decode(rd)
	if err != nil {
		// Damage garbles the JSON before the hash at its end can tell: read
		// to the end, and report the damage rather than the garbled syntax.
		if _, derr := io.Copy(io.Discard, rd); errors.Is(derr, chunk.ErrCorrupt) {
			err = derr
		}
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	if s.ID != id {
		return nil, fmt.Errorf("load snapshot %s: manifest names snapshot %q", id, s.ID)
	}
	return s, nil
}

// SnapshotIDs lists the IDs of all committed snapshots.
func (r *Repository) SnapshotIDs(ctx context.Context) ([]string, error) {
	var ids []string
	for info, err := range r.st.List(ctx, SnapshotsPrefix) {
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		// Only snapshots/<id> holds a snapshot; anything else (a nested or
		// foreign object) is not one and must not break the listing.
		if id := strings.TrimPrefix(info.Key, SnapshotsPrefix); validSnapshotID(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Snapshots loads every snapshot, oldest first. One forgotten between the
// listing and its loading is left out.
func (r *Repository) Snapshots(ctx context.Context) ([]*manifest.Snapshot, error) {
	return r.snapshots(ctx, r.LoadSnapshot)
}

// SnapshotHeaders loads what describes every snapshot, oldest first, without
// their chunks and files: enough to list them or pick one.
func (r *Repository) SnapshotHeaders(ctx context.Context) ([]*manifest.Snapshot, error) {
	return r.snapshots(ctx, r.LoadSnapshotHeader)
}

func (r *Repository) snapshots(ctx context.Context, load func(context.Context, string) (*manifest.Snapshot, error)) ([]*manifest.Snapshot, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	snaps := make([]*manifest.Snapshot, 0, len(ids))
	for _, id := range ids {
		s, err := load(ctx, id)
		if errors.Is(err, ErrSnapshotNotFound) {
			continue // forgotten since it was listed
		}
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, s)
	}
	slices.SortStableFunc(snaps, func(a, b *manifest.Snapshot) int { return a.Time.Compare(b.Time) })
	return snaps, nil
}

// FindSnapshot resolves ref, which is a full ID, a unique ID prefix, or
// "latest" (the newest snapshot by Time, ties broken by the greater ID).
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (*manifest.Snapshot, error) {
	if ref == "latest" {
		snaps, err := r.SnapshotHeaders(ctx)
		if err != nil {
			return nil, err
		}
		if len(snaps) == 0 {
			return nil, fmt.Errorf("latest: repository %s has no snapshots: %w", r.Location(), ErrSnapshotNotFound)
		}
		return r.LoadSnapshot(ctx, slices.MaxFunc(snaps, func(a, b *manifest.Snapshot) int {
			return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.ID, b.ID))
		}).ID)
	}
	id, err := r.ResolveID(ctx, ref)
	if err != nil {
		return nil, err
	}
	return r.LoadSnapshot(ctx, id)
}

// ResolveID resolves ref, a full snapshot ID or a unique ID prefix, to the
// ID of a committed snapshot, without reading it (so a damaged snapshot
// can still be named, to forget it).
func (r *Repository) ResolveID(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("empty snapshot reference: %w", ErrSnapshotNotFound)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return "", err
	}
	var match []string
	for _, id := range ids {
		if id == ref {
			// A full ID wins even when it also prefixes a longer ID.
			return id, nil
		}
		if strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("snapshot %q in %s: %w", ref, r.Location(), ErrSnapshotNotFound)
	case 1:
		return match[0], nil
	default:
		return "", fmt.Errorf("snapshot %q matches %d snapshots: %w", ref, len(match), ErrAmbiguous)
	}
}

func validSnapshotID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Opener opens the store a repository string names (storeurl.Open).
type Opener func(ctx context.Context, repo string, create bool) (store.Store, error)

// Cache opens repositories by their repository string and keeps them open,
// so services handling many chunks of a job open its repository once. It is
// safe for concurrent use.
type Cache struct {
	open   Opener
	timing Timing
	mu     sync.Mutex
	repos  map[string]*Repository
}

// NewCache returns a Cache that opens stores with open.
func NewCache(open Opener) *Cache {
	return &Cache{open: open, repos: make(map[string]*Repository)}
}

// SetTiming makes the cache open repositories with timing t
// (OpenOptions.Timing); call it before the first Get. Only tests that run
// every party of the prune protocol in one process use it.
func (c *Cache) SetTiming(t Timing) *Cache {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timing = t
	return c
}

// Get returns the repository named repo, opening it on first use; with
// create, a missing store or repository is created.
func (c *Cache) Get(ctx context.Context, repo string, create bool) (*Repository, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.repos[repo]; ok {
		return r, nil
	}
	st, err := c.open(ctx, repo, create)
	if err != nil {
		return nil, err
	}
	r, err := Open(ctx, st, OpenOptions{Create: create, Timing: c.timing})
	if err != nil {
		return nil, err
	}
	c.repos[repo] = r
	return r, nil
}
