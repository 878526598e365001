// Package repository is the bulkbackup repository format over a store.Store:
// the key layout, idempotent content-addressed chunk writes, verified chunk
// reads, and snapshots committed last. docs/format.md specifies the layout.
package repository

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// Layout versions. A plaintext repository is version 1; an encrypted one
// is version 2, which readers of version 1 refuse rather than misread.
const (
	// Version is the layout of a plaintext repository.
	Version = 1
	// VersionEncrypted is the layout of an encrypted repository.
	VersionEncrypted = 2
)

// Hash and encryption names of the config.
const (
	// HashSHA256 names chunk IDs that are the SHA-256 of the data
	// (plaintext repositories).
	HashSHA256 = "sha256"
	// HashHMACSHA256 names chunk IDs that are an HMAC-SHA256 under the
	// repository's chunk ID key (encrypted repositories).
	HashHMACSHA256 = "hmac-sha256"
	// EncryptionV1 names the scheme of docs/encryption.md.
	EncryptionV1 = "bulkbackup-v1"
)

// Keys and prefixes of the layout.
const (
	ConfigKey        = "config"
	ChunksPrefix     = "chunks/"
	SnapshotsPrefix  = "snapshots/"
	HeadersPrefix    = "headers/"
	KeysPrefix       = "keys/"
	GrantsPrefix     = "grants/"
	snapshotSealerLv = chunk.LevelDefault
)

// Sentinel errors.
var (
	// ErrNotRepository means the store holds no repository config.
	ErrNotRepository = errors.New("repository: no repository here (create one with bulkctl init)")
	// ErrExists means Init found a repository already there.
	ErrExists = errors.New("repository: a repository already exists here")
	// ErrSnapshotNotFound means no snapshot matches a reference.
	ErrSnapshotNotFound = errors.New("repository: snapshot not found")
	// ErrAmbiguous means an ID prefix matches more than one snapshot.
	ErrAmbiguous = errors.New("repository: snapshot prefix is ambiguous")
	// ErrSnapshotExists means a different snapshot already has the ID.
	ErrSnapshotExists = errors.New("repository: snapshot already exists")
	// ErrLocked means an encrypted repository was asked for something its
	// process holds no key for: reading or writing chunks and snapshots
	// without a write key, reading snapshots without the metadata key,
	// reading chunks without the private key or a grant.
	ErrLocked = errors.New("repository: encrypted, and this process holds no key for that")
	// ErrWrongKey means a key is not the repository's: its key check
	// differs from the config's.
	ErrWrongKey = errors.New("repository: the key does not belong to this repository")
)

// Config is the repository's config object, written once at creation.
type Config struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Hash    string    `json:"hash"`
	// Encryption is EncryptionV1 in an encrypted repository, empty in a
	// plaintext one.
	Encryption string `json:"encryption,omitempty"`
	// KeyCheck is, in an encrypted repository, the hex of the keys' key
	// check (keyring.WriteKey.Check): a key whose check differs is not
	// this repository's.
	KeyCheck string `json:"key_check,omitempty"`
}

// Encrypted reports whether the config is an encrypted repository's.
func (c Config) Encrypted() bool { return c.Encryption != "" }

// validate checks that this build reads the layout the config describes.
func (c Config) validate() error {
	switch {
	case c.Version == Version && c.Hash == HashSHA256 && c.Encryption == "":
	case c.Version == VersionEncrypted && c.Hash == HashHMACSHA256 && c.Encryption == EncryptionV1:
		if len(c.KeyCheck) != 2*keyring.KeySize {
			return errors.New("encrypted, without a key check")
		}
	default:
		return fmt.Errorf("version %d with hash %q and encryption %q is not supported (this build reads version %d, %s, and version %d, %s, %s)",
			c.Version, c.Hash, c.Encryption, Version, HashSHA256, VersionEncrypted, HashHMACSHA256, EncryptionV1)
	}
	if c.ID == "" {
		return errors.New("no repository ID")
	}
	return nil
}

// Repository reads and writes the format on a store. It is safe for
// concurrent use.
type Repository struct {
	st     store.Store
	config Config
	creds  Credentials
	shared *shared
}

// shared is what the views of one repository (WithCredentials,
// WithOpener) share.
type shared struct {
	sealerOnce sync.Once
	sealer     *chunk.Sealer
	sealerErr  error

	contentMu sync.Mutex
	content   map[*keyring.WriteKey]*keyring.Sealer

	hashers sync.Pool // of *keyring.Hasher

	// timing and guard are the prune protocol's (guard.go): one per
	// repository, whichever view a backup or prune goes through.
	timing Timing
	guard  *guard

	// intact holds the directory objects this process read whole
	// recently, and when (trees.go).
	intactMu sync.Mutex
	intact   map[chunk.ID]intactTree
}

// newShared returns the state of a newly opened repository.
func newShared(timing Timing) *shared {
	return &shared{timing: timing, guard: newGuard()}
}

// Credentials are what a process holds of an encrypted repository's keys.
type Credentials struct {
	// Write computes chunk IDs and seals chunks; with its metadata root
	// (Meta) it also reads and writes snapshots. Required.
	Write *keyring.WriteKey
	// Open opens chunks: a *keyring.Opener of the repository's private
	// key (restore clients), or a job's *keyring.Grant (see WithOpener);
	// nil when the process may not read chunks (the fleet's writers).
	Open chunk.ContentOpener
}

// KeyFunc returns the credentials this process holds for the encrypted
// repository whose config is cfg, or an error saying why it holds none.
// An error wrapping ErrLocked opens the repository locked instead.
type KeyFunc func(cfg Config) (Credentials, error)

// OpenOptions tunes Open.
type OpenOptions struct {
	// CreatePlaintext makes Open initialise an empty store as a new
	// plaintext repository: the explicit choice of an unencrypted
	// repository, for tests and programs that made it. Encrypted
	// repositories are created by Init.
	CreatePlaintext bool
	// Keys supplies the credentials of an encrypted repository. Without
	// it an encrypted repository opens locked: its key objects can be
	// listed and unlocked (Unlock), nothing else.
	Keys KeyFunc
	// Timing is the prune protocol's timing; zero means DefaultTiming.
	// Only tests that run every party in one process change it.
	Timing Timing
}

// Open opens the repository on st, creating a plaintext one when
// opts.CreatePlaintext is set and the store has none yet. It fails with
// ErrNotRepository otherwise.
func Open(ctx context.Context, st store.Store, opts OpenOptions) (*Repository, error) {
	if opts.Timing == (Timing{}) {
		opts.Timing = DefaultTiming
	}
	if err := opts.Timing.validate(); err != nil {
		return nil, err
	}
	data, err := st.Get(ctx, ConfigKey)
	switch {
	case errors.Is(err, store.ErrNotFound) && opts.CreatePlaintext:
		r, _, err := Init(ctx, st, InitOptions{Plaintext: true})
		if err != nil {
			return nil, err
		}
		r.shared.timing = opts.Timing
		return r, nil
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), ErrNotRepository)
	case err != nil:
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("open repository %s: config: %w", st.Location(), err)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), err)
	}
	r := &Repository{st: st, config: cfg, shared: newShared(opts.Timing)}
	if !cfg.Encrypted() || opts.Keys == nil {
		return r, nil
	}
	creds, err := opts.Keys(cfg)
	if errors.Is(err, ErrLocked) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), err)
	}
	return r.WithCredentials(creds)
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
func (r *Repository) Timing() Timing { return r.shared.timing }

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
	// Header is the object's header, when it could be parsed (an intact
	// or unchecked object): in an encrypted repository it names the
	// session the chunk was sealed in, which a grant needs.
	Header chunk.Header
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
	case h.Encryption != r.contentEncryption() && !(r.config.Encrypted() && h.Encryption == chunk.EncryptionMeta):
		// A bucket writer's unencrypted object in an encrypted
		// repository, or the reverse: never a chunk of this repository.
		// (Directory objects are sealed as metadata: trees.go.)
		st.State, st.Problem = ChunkDamaged, fmt.Sprintf("object with encryption %d in a repository whose chunks have %d", h.Encryption, r.contentEncryption())
	default:
		st.Header = h
	}
	return st, nil
}

// contentEncryption is the encryption of the repository's chunk objects.
func (r *Repository) contentEncryption() uint8 {
	if r.config.Encrypted() {
		return chunk.EncryptionContent
	}
	return chunk.EncryptionNone
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

// ChunkID returns the ID of a chunk whose raw bytes are raw: their
// SHA-256 in a plaintext repository, their MAC under the repository's
// chunk ID key in an encrypted one (ErrLocked without a write key). Safe
// for concurrent use.
func (r *Repository) ChunkID(raw []byte) (chunk.ID, error) {
	if !r.config.Encrypted() {
		return chunk.Sum(raw), nil
	}
	if r.creds.Write == nil {
		return chunk.ID{}, r.locked("compute chunk IDs")
	}
	h, _ := r.shared.hashers.Get().(*keyring.Hasher)
	if h == nil {
		h = r.creds.Write.NewHasher()
	}
	id := h.Sum(raw)
	r.shared.hashers.Put(h)
	return id, nil
}

// HashName is the name of the repository's chunk IDs, which its manifests
// record: HashSHA256 or HashHMACSHA256.
func (r *Repository) HashName() string { return r.config.Hash }

// SealChunk appends the stored object of the chunk id, whose raw bytes are
// raw, to dst, compressed by s: sealed as Seal does in a plaintext
// repository, encrypted to the repository's public key in an encrypted one
// (ErrLocked without a write key). A dst with capacity
// s.MaxSealedSize(len(raw)) never grows.
func (r *Repository) SealChunk(s *chunk.Sealer, dst []byte, id chunk.ID, raw []byte) ([]byte, error) {
	if !r.config.Encrypted() {
		return s.Seal(dst, id, raw), nil
	}
	ks, err := r.contentSealer()
	if err != nil {
		return dst, err
	}
	return s.SealContent(dst, id, raw, ks.Next()), nil
}

// contentSealer returns the keyring.Sealer of the repository's public key:
// one per write key, so that one process's writer session is shared by
// all its workers.
func (r *Repository) contentSealer() (*keyring.Sealer, error) {
	if r.creds.Write == nil {
		return nil, r.locked("seal chunks")
	}
	r.shared.contentMu.Lock()
	defer r.shared.contentMu.Unlock()
	if ks := r.shared.content[r.creds.Write]; ks != nil {
		return ks, nil
	}
	ks, err := keyring.NewSealer(r.creds.Write.Public)
	if err != nil {
		return nil, err
	}
	if r.shared.content == nil {
		r.shared.content = make(map[*keyring.WriteKey]*keyring.Sealer)
	}
	r.shared.content[r.creds.Write] = ks
	return ks, nil
}

// RotateSession makes the chunks sealed from now on start a new writer
// session (docs/encryption.md section 4.1): what a writer's memory holds
// then opens none of the chunks it sealed before. A no-op in a plaintext
// repository.
func (r *Repository) RotateSession() {
	if ks, err := r.contentSealer(); err == nil {
		ks.Rotate()
	}
}

// locked returns ErrLocked for an operation this repository's process
// holds no key for.
func (r *Repository) locked(what string) error {
	return fmt.Errorf("repository %s: cannot %s: %w", r.Location(), what, ErrLocked)
}

// PutChunk stores a sealed chunk object. Writing a chunk that is already
// stored rewrites the same bytes, so redelivered work is harmless.
func (r *Repository) PutChunk(ctx context.Context, id chunk.ID, sealed []byte) error {
	if err := r.st.Put(ctx, ChunkKey(id), sealed); err != nil {
		return fmt.Errorf("put chunk %s: %w", id, err)
	}
	return nil
}

// OpensChunks reports whether GetChunk can read chunks back: always in a
// plaintext repository; in an encrypted one only with credentials that open
// them (the private key, or a restore job's grant).
func (r *Repository) OpensChunks() bool {
	return !r.config.Encrypted() || r.creds.Open != nil && r.creds.Write != nil
}

// GetChunk reads chunk id, checks it and appends its raw bytes to dst. A
// damaged object yields an error matching chunk.ErrCorrupt that names the
// chunk (in an encrypted repository, also one that does not authenticate,
// keyring.ErrAuth, or that a grant does not cover, keyring.ErrWrongJob); a
// missing one matches store.ErrNotFound. An encrypted repository needs
// credentials that open chunks (ErrLocked).
func (r *Repository) GetChunk(ctx context.Context, id chunk.ID, dst []byte) ([]byte, error) {
	if !r.OpensChunks() {
		return dst, fmt.Errorf("get chunk %s: %w", id, r.locked("open chunks (it needs the repository's password or identity, or a restore job's grant)"))
	}
	obj, err := r.st.Get(ctx, ChunkKey(id))
	if err != nil {
		return dst, fmt.Errorf("get chunk %s: %w", id, err)
	}
	if r.config.Encrypted() {
		if h, err := chunk.ParseHeader(obj); err == nil && h.Encryption == chunk.EncryptionMeta {
			return r.openTreeObject(dst, id, obj)
		}
		return chunk.OpenContent(dst, id, obj, r.creds.Open, r.creds.Write)
	}
	return chunk.Open(dst, id, obj)
}

// openTreeObject is GetChunk for a directory object of an encrypted
// repository, sealed as metadata (trees.go).
func (r *Repository) openTreeObject(dst []byte, id chunk.ID, obj []byte) ([]byte, error) {
	if err := r.checkMeta("read directory objects"); err != nil {
		return dst, fmt.Errorf("get chunk %s: %w", id, err)
	}
	return chunk.OpenMeta(dst, id, obj, r.creds.Write, ChunkKey(id))
}

func (r *Repository) snapshotSealer() (*chunk.Sealer, error) {
	r.shared.sealerOnce.Do(func() { r.shared.sealer, r.shared.sealerErr = chunk.NewSealer(snapshotSealerLv) })
	return r.shared.sealer, r.shared.sealerErr
}

// sealMeta seals raw, the JSON of a manifest or header, for the key name.
func (r *Repository) sealMeta(raw []byte, name string) ([]byte, error) {
	if err := r.checkMeta("write snapshots"); err != nil {
		return nil, err
	}
	id, err := r.ChunkID(raw)
	if err != nil {
		return nil, err
	}
	return r.sealMetaAs(id, raw, name)
}

// sealMetaAs is sealMeta for raw whose ID (ChunkID) the caller has.
func (r *Repository) sealMetaAs(id chunk.ID, raw []byte, name string) ([]byte, error) {
	sealer, err := r.snapshotSealer()
	if err != nil {
		return nil, err
	}
	if !r.config.Encrypted() {
		return sealer.Seal(nil, id, raw), nil
	}
	if err := r.checkMeta("write snapshots"); err != nil {
		return nil, err
	}
	return sealer.SealMeta(nil, id, raw, r.creds.Write, name)
}

// checkMeta fails with ErrLocked unless the process holds the metadata key
// of an encrypted repository.
func (r *Repository) checkMeta(what string) error {
	if r.config.Encrypted() && (r.creds.Write == nil || r.creds.Write.Meta == nil) {
		return r.locked(what + " (it needs the repository's password or identity, or a write key with metadata)")
	}
	return nil
}

func snapshotKey(id string) string { return SnapshotsPrefix + id }

// headerKey is where a snapshot's header (its manifest without chunks and
// files) is kept, so that listing snapshots does not read whole manifests.
func headerKey(id string) string { return HeadersPrefix + id }

// NewSnapshotID returns a fresh random snapshot ID: 32 hex digits.
func NewSnapshotID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

// SaveSnapshot commits a snapshot by writing its manifest; call it only after
// every chunk it names is stored. A files-mode snapshot is stored as a
// tree of directory objects (trees.go), which it writes first, unless it
// comes in stored form, its objects written already (NewTreeWriter). Saving the same snapshot again (a retried
// commit of the same job) is a no-op; saving a different snapshot under an
// existing ID fails with ErrSnapshotExists, so committed snapshots are never
// overwritten.
func (r *Repository) SaveSnapshot(ctx context.Context, s *manifest.Snapshot) error {
	if !validSnapshotID(s.ID) {
		return fmt.Errorf("save snapshot: invalid id %q", s.ID)
	}
	if !s.Stored() {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("save snapshot %s: %w", s.ID, err)
		}
	}
	existing, err := r.loadSnapshot(ctx, s.ID, manifest.DecodeStoredReader, false) // the manifest, not its tree

	switch {
	case err == nil && existing.JobID != "" && existing.JobID == s.JobID:
		return nil
	case err == nil:
		return fmt.Errorf("save snapshot %s: %w", s.ID, ErrSnapshotExists)
	case !errors.Is(err, ErrSnapshotNotFound):
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	if s.Hash != r.config.Hash {
		return fmt.Errorf("save snapshot %s: its chunks are named by %q, the repository's by %q", s.ID, s.Hash, r.config.Hash)
	}
	stored, js := s, []byte(nil)
	if s.Stored() {
		js, err = manifest.EncodeStored(s) // its directory objects stored as it was written (NewTreeWriter)
	} else {
		stored, js, err = r.encodeSnapshot(ctx, s)
	}
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	header, err := manifest.EncodeHeader(stored)
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	// The header first: a snapshot exists once its manifest does, and a
	// header left by a commit that stopped in between names no snapshot.
	hobj, err := r.sealMeta(header, headerKey(s.ID))
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	if err := r.st.Put(ctx, headerKey(s.ID), hobj); err != nil {
		return fmt.Errorf("save snapshot %s: header: %w", s.ID, err)
	}
	obj, err := r.sealMeta(js, snapshotKey(s.ID))
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	if err := r.st.Put(ctx, snapshotKey(s.ID), obj); err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	return nil
}

// LoadSnapshot reads and validates the snapshot with the exact id, with
// its directory objects if it is stored as a tree (trees.go).
func (r *Repository) LoadSnapshot(ctx context.Context, id string) (*manifest.Snapshot, error) {
	return r.loadSnapshot(ctx, id, manifest.DecodeStoredReader, true)
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
	return r.loadSnapshot(ctx, id, manifest.DecodeHeaderReader, false)
}

// loadSnapshot reads the manifest of snapshot id with decode and, with
// trees, assembles one stored as a tree.
func (r *Repository) loadSnapshot(ctx context.Context, id string, decode func(io.Reader) (*manifest.Snapshot, error), trees bool) (*manifest.Snapshot, error) {
	if !validSnapshotID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrSnapshotNotFound)
	}
	s, err := r.openSnapshot(ctx, snapshotKey(id), id, decode)
	if err != nil || !trees || !s.Stored() {
		return s, err
	}
	if err := r.assemble(ctx, s); err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	return s, nil
}

// openSnapshot reads the sealed manifest (or header) of snapshot id under
// key and decodes it as a stream, its cost bounded first (getMeta).
func (r *Repository) openSnapshot(ctx context.Context, key, id string, decode func(io.Reader) (*manifest.Snapshot, error)) (*manifest.Snapshot, error) {
	obj, h, err := r.getMeta(ctx, key, nil)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	var rd io.ReadCloser
	if r.config.Encrypted() {
		rd, err = chunk.OpenMetaStream(h.ID, obj, manifest.MaxSize, r.creds.Write, key)
	} else {
		rd, err = chunk.OpenStream(h.ID, obj, manifest.MaxSize)
	}
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
	if s.Hash != r.config.Hash {
		return nil, fmt.Errorf("load snapshot %s: its chunks are named by %q, the repository's by %q", id, s.Hash, r.config.Hash)
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
	id, err := r.FindSnapshotID(ctx, ref, nil)
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
	open  Opener
	opts  OpenOptions
	mu    sync.Mutex
	repos map[string]*Repository
}

// NewCache returns a Cache that opens stores with open and repositories
// with opts: the credentials of encrypted repositories, and whether a
// missing repository may be created as a plaintext one.
func NewCache(open Opener, opts OpenOptions) *Cache {
	return &Cache{open: open, opts: opts, repos: make(map[string]*Repository)}
}

// SetTiming makes the cache open repositories with timing t
// (OpenOptions.Timing); call it before the first Get. Only tests that run
// every party of the prune protocol in one process use it.
func (c *Cache) SetTiming(t Timing) *Cache {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.Timing = t
	return c
}

// Get returns the repository named repo, opening it on first use. With
// create, and a Cache whose options allow it (CreatePlaintext), a missing
// store or repository is created; otherwise a missing repository is
// ErrNotRepository, and nothing is created.
func (c *Cache) Get(ctx context.Context, repo string, create bool) (*Repository, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.repos[repo]; ok {
		return r, nil
	}
	create = create && c.opts.CreatePlaintext
	st, err := c.open(ctx, repo, create)
	if !create && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: %w", repo, ErrNotRepository)
	}
	if err != nil {
		return nil, err
	}
	r, err := Open(ctx, st, OpenOptions{CreatePlaintext: create, Keys: c.opts.Keys, Timing: c.opts.Timing})
	if err != nil {
		return nil, err
	}
	c.repos[repo] = r
	return r, nil
}
