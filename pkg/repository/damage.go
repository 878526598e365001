package repository

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// DamagedPrefix holds the registry of chunks found damaged or missing:
// damaged/<h64>, plain JSON (docs/format.md section 10.1).
const DamagedPrefix = "damaged/"

// Who finds damage, for Damage.FoundBy.
const (
	FoundByCheck   = "check"
	FoundByVerify  = "verify"
	FoundByRestore = "restore"
	// FoundByLoad: reading a snapshot's directory objects (trees.go).
	FoundByLoad = "load"
)

// Damage is the record of a chunk found damaged or missing. While it is
// there, no backup deduplicates against the chunk: the next one that
// produces it stores it again, then removes the record. Damage inside a
// payload of the right length is invisible to StatChunk; the record is how
// the next backup learns of it.
type Damage struct {
	V     int    `json:"v"`
	Chunk string `json:"chunk"`
	// State is "damaged" or "missing".
	State   string    `json:"state"`
	Problem string    `json:"problem,omitempty"`
	FoundBy string    `json:"found_by"`
	Time    time.Time `json:"time"`
}

func damageKey(id chunk.ID) string { return DamagedPrefix + id.String() }

// RecordDamage records that chunk d.Chunk was found damaged or missing.
func (r *Repository) RecordDamage(ctx context.Context, d Damage) error {
	id, err := chunk.ParseID(d.Chunk)
	if err != nil {
		return fmt.Errorf("record damage: %w", err)
	}
	d.V = 1
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := r.st.Put(ctx, damageKey(id), data); err != nil {
		return fmt.Errorf("record damage of chunk %s in %s: %w", id, r.Location(), err)
	}
	r.shared.guard.noteDamage(id, true)
	return nil
}

// ClearDamage removes chunk id's damage record, once the chunk is stored
// whole again (or read back intact). Clearing a chunk without a record is
// no error.
func (r *Repository) ClearDamage(ctx context.Context, id chunk.ID) error {
	if err := r.st.Delete(ctx, damageKey(id)); err != nil {
		return fmt.Errorf("clear the damage record of chunk %s in %s: %w", id, r.Location(), err)
	}
	r.shared.guard.noteDamage(id, false)
	return nil
}

// DamageRecords lists the damage records, by chunk. A record that cannot
// be read is listed with what its key says and the problem "record
// unreadable".
func (r *Repository) DamageRecords(ctx context.Context) ([]Damage, error) {
	var out []Damage
	for info, err := range r.st.List(ctx, DamagedPrefix) {
		if err != nil {
			return nil, fmt.Errorf("list damage records: %w", err)
		}
		hash := strings.TrimPrefix(info.Key, DamagedPrefix)
		if _, err := chunk.ParseID(hash); err != nil {
			continue
		}
		data, err := r.st.Get(ctx, info.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", info.Key, err)
		}
		var d Damage
		if json.Unmarshal(data, &d) != nil || d.Chunk != hash {
			d = Damage{V: 1, Chunk: hash, State: "damaged", Problem: "record unreadable"}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Damage) int { return strings.Compare(a.Chunk, b.Chunk) })
	return out, nil
}

// damagedIDs lists the chunks that have a damage record, from the keys
// alone.
func (r *Repository) damagedIDs(ctx context.Context) (map[chunk.ID]bool, error) {
	ids := make(map[chunk.ID]bool)
	for info, err := range r.st.List(ctx, DamagedPrefix) {
		if err != nil {
			return nil, fmt.Errorf("list damage records: %w", err)
		}
		if id, err := chunk.ParseID(strings.TrimPrefix(info.Key, DamagedPrefix)); err == nil {
			ids[id] = true
		}
	}
	return ids, nil
}
