package repository

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// Maintenance objects (a prune's state and lists, deleted-shard records)
// are sealed exactly like snapshot objects (docs/format.md section 3): the
// header's id is the SHA-256 of the payload, checked on every read, so a
// damaged list is refused rather than trusted to decide what to delete.

// maxSealedControl bounds the payload of a maintenance object this package
// reads: a condemned list of a shard, the largest, holds at most
// MaxCondemnedPerShard entries of 40 bytes.
const maxSealedControl = 64 << 20

// putSealed seals payload and stores it under key.
func (r *Repository) putSealed(ctx context.Context, key string, payload []byte) error {
	sealer, err := r.snapshotSealer()
	if err != nil {
		return err
	}
	if err := r.st.Put(ctx, key, sealer.Seal(nil, chunk.Sum(payload), payload)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// getSealed reads the sealed object under key and returns its checked
// payload. A missing object wraps store.ErrNotFound; a damaged one
// chunk.ErrCorrupt.
func (r *Repository) getSealed(ctx context.Context, key string) ([]byte, error) {
	prefix, info, err := r.st.Peek(ctx, key, chunk.MaxHeaderPrefix)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	h, err := chunk.ParseHeader(prefix)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %v", key, chunk.ErrCorrupt, err)
	}
	if h.RawLen > maxSealedControl || info.Size > maxSealedControl+int64(h.HeaderLen) {
		return nil, fmt.Errorf("read %s: %w: %d bytes, more than the %d this build reads", key, chunk.ErrTooLarge, info.Size, maxSealedControl)
	}
	obj, err := r.st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	payload, err := chunk.Open(nil, h.ID, obj)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return payload, nil
}

// putSealedJSON stores v's JSON form sealed under key.
func (r *Repository) putSealedJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return r.putSealed(ctx, key, data)
}

// getSealedJSON reads the sealed JSON object under key into v.
func (r *Repository) getSealedJSON(ctx context.Context, key string, v any) error {
	data, err := r.getSealed(ctx, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	return nil
}

// exists reports whether an object is stored under key.
func (r *Repository) exists(ctx context.Context, key string) (bool, error) {
	_, err := r.st.Stat(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up %s: %w", key, err)
}
