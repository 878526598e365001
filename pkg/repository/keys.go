package repository

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/google/uuid"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// KeyObject is one stored key object (keys/<id>): the repository's keys
// wrapped by a password or to age recipients (keyring.WrapPassword,
// keyring.WrapRecipients).
type KeyObject struct {
	Info keyring.KeyInfo
	Data []byte
}

// InitOptions says what kind of repository Init creates.
type InitOptions struct {
	// Plaintext creates an unencrypted repository: the explicit choice
	// docs/security.md warns about. Otherwise the repository is encrypted.
	Plaintext bool
	// Wrap returns the key objects that hold a new encrypted repository's
	// keys: at least one (a password, age recipients). Required unless
	// Plaintext.
	Wrap func(k *keyring.Keys) ([]KeyObject, error)
}

// Init creates a repository on st, which must hold none. An encrypted one
// gets fresh keys (keyring.GenerateKeys), which opts.Wrap wraps; the key
// objects are stored before the config, so a repository never exists
// without a key that opens it. It returns the repository, open with all of
// its keys, and the keys (nil for a plaintext repository).
func Init(ctx context.Context, st store.Store, opts InitOptions) (*Repository, *keyring.Keys, error) {
	if _, err := st.Stat(ctx, ConfigKey); err == nil {
		return nil, nil, fmt.Errorf("init repository %s: %w", st.Location(), ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("init repository %s: %w", st.Location(), err)
	}
	cfg := Config{Version: Version, ID: uuid.NewString(), Created: time.Now().UTC(), Hash: HashSHA256}
	var keys *keyring.Keys
	if !opts.Plaintext {
		if opts.Wrap == nil {
			return nil, nil, fmt.Errorf("init repository %s: an encrypted repository needs a password or an age recipient", st.Location())
		}
		var err error
		if keys, err = keyring.GenerateKeys(cfg.ID); err != nil {
			return nil, nil, err
		}
		objs, err := opts.Wrap(keys)
		if err != nil {
			return nil, nil, fmt.Errorf("init repository %s: %w", st.Location(), err)
		}
		if len(objs) == 0 {
			return nil, nil, fmt.Errorf("init repository %s: no key object wraps its keys", st.Location())
		}
		for _, o := range objs {
			if err := putKey(ctx, st, o); err != nil {
				return nil, nil, fmt.Errorf("init repository %s: %w", st.Location(), err)
			}
		}
		check := keys.Check()
		cfg.Version, cfg.Hash, cfg.Encryption, cfg.KeyCheck = VersionEncrypted, HashHMACSHA256, EncryptionV1, hex.EncodeToString(check[:])
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	if err := st.Put(ctx, ConfigKey, data); err != nil {
		return nil, nil, fmt.Errorf("create repository %s: %w", st.Location(), err)
	}
	r := &Repository{st: st, config: cfg, shared: newShared(DefaultTiming)}
	if keys == nil {
		return r, nil, nil
	}
	r, err = r.WithCredentials(Credentials{Write: &keys.WriteKey, Open: keyring.NewOpener(keys.Private)})
	return r, keys, err
}

// WithCredentials returns a view of the repository that uses creds, after
// checking that their write key is this repository's (ErrWrongKey). A
// plaintext repository needs none and ignores them.
func (r *Repository) WithCredentials(creds Credentials) (*Repository, error) {
	if !r.config.Encrypted() {
		return r, nil
	}
	if creds.Write == nil {
		return nil, fmt.Errorf("repository %s: credentials without a write key", r.Location())
	}
	if err := r.CheckKey(creds.Write); err != nil {
		return nil, err
	}
	v := *r
	v.creds = creds
	return &v, nil
}

// CheckKey checks that wk is this repository's: its repository ID and key
// check are the config's. Otherwise the error wraps ErrWrongKey.
func (r *Repository) CheckKey(wk *keyring.WriteKey) error {
	if err := wk.CheckRepository(r.config.ID); err != nil {
		return fmt.Errorf("repository %s: %w: %w", r.Location(), ErrWrongKey, err)
	}
	want, err := hex.DecodeString(r.config.KeyCheck)
	got := wk.Check()
	if err != nil || !hmac.Equal(want, got[:]) {
		return fmt.Errorf("repository %s: %w: its key check differs from the config's (a damaged or planted key, or a changed config)", r.Location(), ErrWrongKey)
	}
	return nil
}

// WithOpener returns a view of the repository whose chunks are opened by o:
// a restore job's grant (keyring.Grant) on a host that holds only a write
// key. It needs the write key too, to check each chunk's MAC.
func (r *Repository) WithOpener(o chunk.ContentOpener) *Repository {
	v := *r
	v.creds.Open = o
	return &v
}

// Encrypted reports whether the repository is encrypted.
func (r *Repository) Encrypted() bool { return r.config.Encrypted() }

// WriteKey returns the write key the repository was opened with, nil when
// it is plaintext or locked.
func (r *Repository) WriteKey() *keyring.WriteKey { return r.creds.Write }

// HandOverKey returns the key that seals the raw chunks a reader hands to
// a compressor for this repository (keyring.WriteKey.SealStaging, every
// write key holder can open them): nil for a plaintext repository, whose
// chunks are handed over as they are. It fails with ErrLocked for an
// encrypted repository opened without a write key.
func (r *Repository) HandOverKey() (*keyring.WriteKey, error) {
	if !r.config.Encrypted() {
		return nil, nil
	}
	if r.creds.Write == nil {
		return nil, r.locked("hand over raw chunks sealed")
	}
	return r.creds.Write, nil
}

func keyKey(id string) string { return KeysPrefix + id }

func putKey(ctx context.Context, st store.Store, o KeyObject) error {
	if info, err := keyring.ParseKeyInfo(o.Data); err != nil || info.ID != o.Info.ID {
		return fmt.Errorf("store key object %s: not a key object of that ID", o.Info.ID)
	}
	if err := st.Put(ctx, keyKey(o.Info.ID), o.Data); err != nil {
		return fmt.Errorf("store key object %s: %w", o.Info.ID, err)
	}
	return nil
}

// AddKey stores a key object of this repository: another password or
// set of age recipients that opens it.
func (r *Repository) AddKey(ctx context.Context, o KeyObject) error {
	if o.Info.Repository != r.config.ID {
		return fmt.Errorf("add key: %w: the key object is for repository %q, not %q", ErrWrongKey, o.Info.Repository, r.config.ID)
	}
	return putKey(ctx, r.st, o)
}

// Keys returns the repository's key objects, sorted by creation time.
// A key object that cannot be read is returned with only its ID in Info
// and the problem in Err.
func (r *Repository) Keys(ctx context.Context) ([]StoredKey, error) {
	var keys []StoredKey
	for info, err := range r.st.List(ctx, KeysPrefix) {
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		id := strings.TrimPrefix(info.Key, KeysPrefix)
		if strings.Contains(id, "/") {
			continue
		}
		k := StoredKey{KeyObject: KeyObject{Info: keyring.KeyInfo{ID: id}}}
		if info.Size > keyring.MaxKeyObjectSize {
			k.Err = fmt.Errorf("%w: key object %s is %d bytes", keyring.ErrDamaged, id, info.Size)
		} else if k.Data, k.Err = r.st.Get(ctx, info.Key); k.Err == nil {
			var ki keyring.KeyInfo
			if ki, k.Err = keyring.ParseKeyInfo(k.Data); k.Err == nil && ki.ID != id {
				k.Err = fmt.Errorf("%w: key object %s is stored as %s", keyring.ErrDamaged, ki.ID, id)
			} else if k.Err == nil {
				k.Info = ki
			}
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b StoredKey) int {
		return cmp.Or(a.Info.Created.Compare(b.Info.Created), strings.Compare(a.Info.ID, b.Info.ID))
	})
	return keys, nil
}

// StoredKey is a key object as Keys found it.
type StoredKey struct {
	KeyObject
	// Err says why the object could not be read or parsed.
	Err error
}

// RemoveKey deletes the key object id. It refuses to delete the last one:
// the repository could then never be opened again.
func (r *Repository) RemoveKey(ctx context.Context, id string) error {
	keys, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	found, usable := false, 0
	for _, k := range keys {
		if k.Info.ID == id {
			found = true
		} else if k.Err == nil {
			usable++
		}
	}
	switch {
	case !found:
		return fmt.Errorf("remove key %s: no such key in %s", id, r.Location())
	case usable == 0:
		return fmt.Errorf("remove key %s: it is the repository's last key; without it nothing in %s could be read again", id, r.Location())
	}
	if err := r.st.Delete(ctx, keyKey(id)); err != nil {
		return fmt.Errorf("remove key %s: %w", id, err)
	}
	return nil
}

// Unlocked is what Unlock found: the repository's keys, and the key object
// that opened them.
type Unlocked struct {
	Keys *keyring.Keys
	Key  keyring.KeyInfo
}

// Unlock opens the repository's key objects with ids (passwords through
// keyring.PasswordIdentity, age identities) until one opens, and checks
// that what it holds are this repository's keys (its repository ID and the
// config's key check: a key object a bucket writer planted, wrapping keys
// of its own to a recipient of ours, is refused). It fails wrapping
// keyring.ErrNoKey when no key object opens with ids.
func (r *Repository) Unlock(ctx context.Context, ids ...age.Identity) (*Unlocked, error) {
	if !r.config.Encrypted() {
		return nil, fmt.Errorf("repository %s is not encrypted", r.Location())
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var damaged []error
	for _, k := range keys {
		if k.Err != nil {
			damaged = append(damaged, k.Err)
			continue
		}
		if k.Info.Repository != r.config.ID {
			damaged = append(damaged, fmt.Errorf("key object %s is for repository %q", k.Info.ID, k.Info.Repository))
			continue
		}
		got, err := keyring.Unwrap(k.Data, ids...)
		if errors.Is(err, keyring.ErrNoKey) {
			continue
		}
		if err == nil {
			err = r.CheckKey(&got.WriteKey)
		}
		if err != nil {
			damaged = append(damaged, fmt.Errorf("key object %s: %w", k.Info.ID, err))
			continue
		}
		return &Unlocked{Keys: got, Key: k.Info}, nil
	}
	err = fmt.Errorf("repository %s: %w (%d key objects tried)", r.Location(), keyring.ErrNoKey, len(keys))
	if len(damaged) > 0 {
		err = errors.Join(append([]error{err}, damaged...)...)
	}
	return nil, err
}

// grantKey is where the grant of job is stored: the job ID, which may
// name hosts and dates, is hashed, so the bucket shows nothing of it.
func grantKey(job string) string {
	sum := sha256.Sum256([]byte("bulkbackup grant\x00" + job))
	return GrantsPrefix + hex.EncodeToString(sum[:16])
}

// PutGrant stores the grant of a restore job (keyring.WrapForJob): its
// target hosts read it with LoadGrant. The restore client deletes it
// (DeleteGrant) when the job ends.
func (r *Repository) PutGrant(ctx context.Context, job string, wrapped []byte) error {
	if err := r.st.Put(ctx, grantKey(job), wrapped); err != nil {
		return fmt.Errorf("store the grant of job %s: %w", job, err)
	}
	return nil
}

// LoadGrant reads the grant of job and opens it with the host's
// identities, checking that it is for this repository and job and has not
// expired at now (keyring.UnwrapForJob).
func (r *Repository) LoadGrant(ctx context.Context, job string, now time.Time, ids ...age.Identity) (*keyring.Grant, error) {
	_, info, err := r.st.Peek(ctx, grantKey(job), 0)
	if err != nil {
		return nil, fmt.Errorf("load the grant of job %s: %w", job, err)
	}
	if info.Size > keyring.MaxGrantSize+keyring.MaxGrantSize/32 {
		return nil, fmt.Errorf("load the grant of job %s: %w: %d bytes", job, keyring.ErrDamaged, info.Size)
	}
	data, err := r.st.Get(ctx, grantKey(job))
	if err != nil {
		return nil, fmt.Errorf("load the grant of job %s: %w", job, err)
	}
	g, err := keyring.UnwrapForJob(data, r.config.ID, job, now, ids...)
	if err != nil {
		return nil, fmt.Errorf("load the grant of job %s: %w", job, err)
	}
	return g, nil
}

// DeleteGrant removes the grant of job, if any.
func (r *Repository) DeleteGrant(ctx context.Context, job string) error {
	if err := r.st.Delete(ctx, grantKey(job)); err != nil {
		return fmt.Errorf("delete the grant of job %s: %w", job, err)
	}
	return nil
}
