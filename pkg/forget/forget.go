// Package forget applies a keep policy (package retention) to a
// repository's snapshots: it reads their headers, lets the policy decide,
// and forgets what it removes. bulkctl forget and the coordinator's
// schedules both use it. Forgetting removes snapshot objects only; a prune
// deletes the chunks nothing names any more.
package forget

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

// Plan reads the headers of the repository's snapshots that f selects (nil:
// all) and returns the policy's decision on each group (retention.Apply,
// with the time now).
func Plan(ctx context.Context, repo *repository.Repository, p retention.Policy, by retention.GroupBy, f *manifest.Filter, now time.Time) ([]retention.Group, error) {
	heads, err := repo.SnapshotHeadersMatching(ctx, f)
	if err != nil {
		return nil, err
	}
	var snaps []retention.Snapshot
	for _, h := range heads {
		snaps = append(snaps, Snapshot(h))
	}
	if len(snaps) == 0 {
		return nil, nil
	}
	return retention.Apply(snaps, p, by, now)
}

// Snapshot returns what the policy needs of a snapshot's header.
func Snapshot(h *manifest.Snapshot) retention.Snapshot {
	return retention.Snapshot{ID: h.ID, Time: h.Time, Host: h.Host, Path: h.Path, Tags: h.Tags}
}

// Remove forgets the snapshots the groups remove, and returns the IDs it
// forgot. A snapshot already gone counts as forgotten; the first other
// failure stops it, returning what it forgot so far.
func Remove(ctx context.Context, repo *repository.Repository, groups []retention.Group) ([]string, error) {
	var done []string
	for _, g := range groups {
		for _, s := range g.Remove {
			if err := repo.ForgetSnapshot(ctx, s.ID); err != nil && !errors.Is(err, repository.ErrSnapshotNotFound) {
				return done, fmt.Errorf("forget: %w", err)
			}
			done = append(done, s.ID)
		}
	}
	return done, nil
}
