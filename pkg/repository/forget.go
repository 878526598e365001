package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// ForgetSnapshot removes the snapshot with the exact id: its snapshot
// object first (the snapshot is gone from that moment), then its header.
// The chunks it names stay until a prune finds nothing references them.
// Forgetting a snapshot that is not there fails with ErrSnapshotNotFound.
func (r *Repository) ForgetSnapshot(ctx context.Context, id string) error {
	if !validSnapshotID(id) {
		return fmt.Errorf("forget snapshot %q: %w", id, ErrSnapshotNotFound)
	}
	if _, err := r.st.Stat(ctx, snapshotKey(id)); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("forget snapshot %s in %s: %w", id, r.Location(), ErrSnapshotNotFound)
	} else if err != nil {
		return fmt.Errorf("forget snapshot %s: %w", id, err)
	}
	if err := r.st.Delete(ctx, snapshotKey(id)); err != nil {
		return fmt.Errorf("forget snapshot %s: %w", id, err)
	}
	// A header left behind names no snapshot (section 4.1); removing it is
	// tidiness, and a prune removes what is left.
	if err := r.st.Delete(ctx, headerKey(id)); err != nil {
		return fmt.Errorf("forget snapshot %s: header: %w", id, err)
	}
	return nil
}
