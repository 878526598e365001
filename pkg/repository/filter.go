package repository

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// SnapshotHeadersMatching loads what describes the snapshots that match
// filter, oldest first (SnapshotHeaders).
func (r *Repository) SnapshotHeadersMatching(ctx context.Context, filter *manifest.Filter) ([]*manifest.Snapshot, error) {
	snaps, err := r.SnapshotHeaders(ctx)
	if err != nil || filter.Empty() {
		return snaps, err
	}
	return slices.DeleteFunc(snaps, func(s *manifest.Snapshot) bool { return !filter.Match(s) }), nil
}

// FindSnapshotMatching resolves ref as FindSnapshot does among the
// snapshots that match filter: "latest" is the newest of them, and an ID
// (or prefix) must name one of them.
func (r *Repository) FindSnapshotMatching(ctx context.Context, ref string, filter *manifest.Filter) (*manifest.Snapshot, error) {
	id, err := r.FindSnapshotID(ctx, ref, filter)
	if err != nil {
		return nil, err
	}
	return r.LoadSnapshot(ctx, id)
}

// FindSnapshotID resolves ref as FindSnapshotMatching does (filter nil
// for any snapshot), reading only headers: the ID of a committed snapshot.
func (r *Repository) FindSnapshotID(ctx context.Context, ref string, filter *manifest.Filter) (string, error) {
	if ref != "latest" {
		id, err := r.ResolveID(ctx, ref)
		if err != nil || filter.Empty() {
			return id, err
		}
		s, err := r.LoadSnapshotHeader(ctx, id)
		if err != nil {
			return "", err
		}
		if !filter.Match(s) {
			return "", fmt.Errorf("snapshot %s (%s) does not match %s: %w", s.ID, describe(s), filter, ErrSnapshotNotFound)
		}
		return id, nil
	}
	snaps, err := r.SnapshotHeadersMatching(ctx, filter)
	if err != nil {
		return "", err
	}
	if len(snaps) == 0 {
		if filter.Empty() {
			return "", fmt.Errorf("latest: repository %s has no snapshots: %w", r.Location(), ErrSnapshotNotFound)
		}
		return "", fmt.Errorf("latest: no snapshot in %s matches %s: %w", r.Location(), filter, ErrSnapshotNotFound)
	}
	return slices.MaxFunc(snaps, func(a, b *manifest.Snapshot) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.ID, b.ID))
	}).ID, nil
}

// describe names a snapshot's source and tags: "db1:/srv, tags [a b]".
func describe(s *manifest.Snapshot) string {
	d := s.Host + ":" + s.Path
	if len(s.Tags) > 0 {
		d += ", tags [" + strings.Join(s.Tags, " ") + "]"
	} else {
		d += ", no tags"
	}
	return d
}
