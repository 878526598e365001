package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// A backup registers in its repository before it decides to reuse or store
// any chunk (repository.Writer), renews the registration while it runs,
// and removes it when it ends, so that a prune waits for it
// (docs/format.md section 10.2). A backup that could not renew for longer
// than the protocol allows, or whose registration lapsed while no
// coordinator ran it, does not commit: a prune may have deleted a chunk it
// names.

// errLapsed is wrapped when a backup's registration lapsed.
var errLapsed = errors.New("the backup's registration in the repository lapsed")

// registration is a running backup's registration, renewed in the
// background.
type registration struct {
	repo   *repository.Repository
	id     string
	mu     sync.Mutex
	lastOK time.Time
	stop   func()
}

// register registers the job as a writer of repo, after checking, for a
// resumed job, that its registration did not lapse while no coordinator
// ran it; then it renews it every Timing.WriterRenew until closed.
func (jr *jobRun) register(ctx context.Context, repo *repository.Repository) (*registration, error) {
	job := jr.job
	if job.Epoch > 1 {
		if err := jr.checkLapse(ctx, repo); err != nil {
			return nil, err
		}
	}
	w := &repository.Writer{ID: job.ID, Source: job.Backup.Source.String(), Started: job.Started}
	if err := repo.RegisterWriter(ctx, w); err != nil {
		return nil, err
	}
	renewCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	reg := &registration{repo: repo, id: job.ID, lastOK: time.Now()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(repo.Timing().WriterRenew)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
			}
			if err := repo.RegisterWriter(renewCtx, w); err != nil {
				if renewCtx.Err() == nil {
					jr.logger.WarnContext(renewCtx, "renewing the backup's registration failed; retrying", "err", err)
				}
				continue
			}
			reg.mu.Lock()
			reg.lastOK = time.Now()
			reg.mu.Unlock()
		}
	}()
	reg.stop = func() { cancel(); <-done }
	return reg, nil
}

// checkLapse fails a resumed backup whose registration is gone or expired
// if a prune condemned chunks since the backup began: it may have deleted
// chunks the backup named before it was interrupted.
func (jr *jobRun) checkLapse(ctx context.Context, repo *repository.Repository) error {
	w, err := repo.LoadWriter(ctx, jr.job.ID)
	if err == nil && time.Now().Before(w.Expires) {
		return nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	ids, err := repo.PruneIDs(ctx)
	if err != nil {
		return err
	}
	// Clocks of two machines: count prunes from a minute early.
	since := jr.job.Started.Add(-time.Minute)
	for _, id := range ids {
		p, err := repo.LoadPrune(ctx, id)
		if err != nil {
			return err
		}
		if !p.DryRun && !p.CondemnedAt.IsZero() && p.CondemnedAt.After(since) {
			return fmt.Errorf("%w while no coordinator ran it, and prune %s ran since it began: chunks it named may be gone; back up again",
				errLapsed, id)
		}
	}
	return nil
}

// current fails when the registration could not be renewed for longer
// than the protocol allows (Timing.Lapse): a prune may have stopped
// waiting for this backup.
func (r *registration) current() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if since := time.Since(r.lastOK); since > r.repo.Timing().Lapse() {
		return fmt.Errorf("%w: not renewed for %s (the repository %s did not take it); a prune may have removed chunks it named: back up again",
			errLapsed, since.Round(time.Second), r.repo.Location())
	}
	return nil
}

// close stops renewing and, unless the job is to be resumed (keep),
// removes the registration.
func (r *registration) close(ctx context.Context, keep bool) error {
	r.stop()
	if keep {
		return nil
	}
	return r.repo.RemoveWriter(ctx, r.id)
}
