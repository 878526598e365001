package repository

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// WritersPrefix holds the registrations of running backups:
// writers/<job-id>, plain JSON (docs/format.md section 10.2).
const WritersPrefix = "writers/"

// Writer is a running backup's registration. A backup registers before it
// decides to reuse or store any chunk, renews the registration every
// Timing.WriterRenew, and removes it once it has committed or failed; a
// prune waits for every backup registered when it begins to delete, so a
// chunk such a backup named is never deleted under it.
type Writer struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	Source  string    `json:"source,omitempty"`
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
	// Expires is when the registration ends unless renewed: Renewed plus
	// the writer's Timing.WriterExpiry.
	Expires time.Time `json:"expires"`
}

// nameRE is what may name a writer or a prune: a job ID.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ErrInvalidName is wrapped when a writer or prune is named by something
// that is not a job ID.
var ErrInvalidName = errors.New("repository: invalid writer or prune name")

func checkName(what, id string) error {
	if !nameRE.MatchString(id) {
		return fmt.Errorf("%w: %s %q (letters, digits, '-' and '_')", ErrInvalidName, what, id)
	}
	return nil
}

func writerKey(id string) string { return WritersPrefix + id }

// RegisterWriter writes w's registration, or renews it: Renewed becomes
// now and Expires now plus the repository's Timing.WriterExpiry. Started
// is set when zero.
func (r *Repository) RegisterWriter(ctx context.Context, w *Writer) error {
	if err := checkName("writer", w.ID); err != nil {
		return err
	}
	now := time.Now().UTC()
	w.V = 1
	if w.Started.IsZero() {
		w.Started = now
	}
	w.Renewed, w.Expires = now, now.Add(r.shared.timing.WriterExpiry)
	stored := *w
	if r.Encrypted() {
		stored.Source = "" // plain JSON: an encrypted repository names no source in the clear
	}
	data, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	if err := r.st.Put(ctx, writerKey(w.ID), data); err != nil {
		return fmt.Errorf("register backup %s in %s: %w", w.ID, r.Location(), err)
	}
	return nil
}

// RemoveWriter removes a backup's registration; removing one that is not
// there is no error.
func (r *Repository) RemoveWriter(ctx context.Context, id string) error {
	if err := checkName("writer", id); err != nil {
		return err
	}
	if err := r.st.Delete(ctx, writerKey(id)); err != nil {
		return fmt.Errorf("remove the registration of backup %s from %s: %w", id, r.Location(), err)
	}
	return nil
}

// LoadWriter reads one registration; a missing one wraps store.ErrNotFound.
func (r *Repository) LoadWriter(ctx context.Context, id string) (*Writer, error) {
	if err := checkName("writer", id); err != nil {
		return nil, err
	}
	return r.loadWriter(ctx, writerKey(id))
}

func (r *Repository) loadWriter(ctx context.Context, key string) (*Writer, error) {
	data, err := r.st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	var w Writer
	if err := json.Unmarshal(data, &w); err != nil || w.ID == "" || w.Expires.IsZero() {
		return nil, fmt.Errorf("%s in %s cannot be read (%v): remove it if no backup into this repository is running", key, r.Location(), err)
	}
	return &w, nil
}

// Writers lists the registered backups, by ID. A registration that cannot
// be read is an error naming it: a prune must not guess whether its backup
// runs.
func (r *Repository) Writers(ctx context.Context) ([]*Writer, error) {
	var out []*Writer
	for info, err := range r.st.List(ctx, WritersPrefix) {
		if err != nil {
			return nil, fmt.Errorf("list running backups: %w", err)
		}
		if !nameRE.MatchString(strings.TrimPrefix(info.Key, WritersPrefix)) {
			continue
		}
		w, err := r.loadWriter(ctx, info.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile: that backup has ended
		}
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *Writer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
