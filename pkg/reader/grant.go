package reader

import (
	"context"
	"errors"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// grantIdle is how long a job's grant is kept after its last use: a
// restore's steps come close together, and a grant is dropped soon after
// its job ends (the reader is not told when).
const grantIdle = 5 * time.Minute

// grants holds, in memory only, the grants of the restore jobs of encrypted
// repositories this reader runs: each opens the chunks of its job and no
// other, and none outlives its job by long.
type grants struct {
	identity *age.X25519Identity // nil: this reader restores no encrypted repository
	now      func() time.Time

	mu    sync.Mutex
	byJob map[string]*grantEntry
}

type grantEntry struct {
	ready chan struct{} // closed once g or err is set
	g     *keyring.Grant
	err   error
	used  time.Time
}

func newGrants(id *age.X25519Identity) *grants {
	return &grants{identity: id, now: time.Now, byJob: make(map[string]*grantEntry)}
}

// restoreRepo returns the repository named name as a restore job needs it:
// a plaintext one as it is, an encrypted one opening chunks with the job's
// grant, which the restore client stored in the repository wrapped to this
// reader's identity. A grant that is missing, not for this host or job, or
// expired fails the step for good (queue.CodeDenied): retrying would not
// change it.
func (r *Reader) restoreRepo(ctx context.Context, name, jobID string) (*repository.Repository, error) {
	repo, err := r.cfg.Repos.Get(ctx, name, false)
	if err != nil {
		return nil, err
	}
	if !repo.Encrypted() {
		return repo, nil
	}
	g, err := r.grants.get(ctx, repo, jobID)
	if err != nil {
		return nil, err
	}
	return repo.WithOpener(g), nil
}

// get returns the grant of jobID in repo, loading it once for all the
// job's steps.
func (gs *grants) get(ctx context.Context, repo *repository.Repository, jobID string) (*keyring.Grant, error) {
	if gs.identity == nil {
		return nil, queue.Failed(queue.CodeDenied, "repository %s is encrypted and this reader has no host identity to receive a restore's keys (BULK_HOST_IDENTITY_FILE)", repo.Location())
	}
	now := gs.now()
	gs.mu.Lock()
	for job, e := range gs.byJob { // drop what ended
		select {
		case <-e.ready:
			if now.Sub(e.used) > grantIdle || e.g != nil && !now.Before(e.g.Expires) {
				delete(gs.byJob, job)
			}
		default:
		}
	}
	e := gs.byJob[jobID]
	if e == nil {
		e = &grantEntry{ready: make(chan struct{})}
		gs.byJob[jobID] = e
		gs.mu.Unlock()
		e.g, e.err = repo.LoadGrant(ctx, jobID, now, gs.identity)
		gs.mu.Lock()
		if e.err != nil && !permanentGrantError(e.err) {
			delete(gs.byJob, jobID) // the repository may answer next time
		}
		close(e.ready)
	}
	e.used = now
	gs.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err == nil && !now.Before(e.g.Expires) {
		return nil, queue.Failed(queue.CodeDenied, "the grant of job %s expired at %s", jobID, e.g.Expires.Format(time.RFC3339))
	}
	if e.err != nil && permanentGrantError(e.err) {
		return nil, queue.Failed(queue.CodeDenied, "%v (this reader's identity is %s)", e.err, gs.identity.Recipient())
	}
	return e.g, e.err
}

// permanentGrantError reports whether loading a grant failed in a way
// that another try would not change.
func permanentGrantError(err error) bool {
	for _, e := range []error{store.ErrNotFound, keyring.ErrNoKey, keyring.ErrDamaged, keyring.ErrWrongJob,
		keyring.ErrWrongRepository, keyring.ErrExpired} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
