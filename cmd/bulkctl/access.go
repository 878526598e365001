package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

// access is what the in-process fleet's services hold of an encrypted
// repository: as a distributed fleet, the coordinator a write key with
// metadata, the reader and compressors one without, and none the private
// key (restores get grants). The zero value is for plaintext
// repositories.
type access struct {
	coordinator, workers repository.KeyFunc
}

// writeAccess returns the access of write key wk, a coordinator's.
func writeAccess(wk *keyring.WriteKey) *access {
	worker := wk.WithoutMeta()
	return &access{
		coordinator: func(repository.Config) (repository.Credentials, error) { return repository.Credentials{Write: wk}, nil },
		workers: func(repository.Config) (repository.Credentials, error) {
			return repository.Credentials{Write: worker}, nil
		},
	}
}

// backupAccess returns what an in-process backup, prune or check of the
// repository named by c needs: nothing for a plaintext repository; for an encrypted
// one a coordinator's write key (BULK_WRITE_KEY_FILE: a backup host need
// not hold the password), or else the keys the password or identity opens.
// With opens (check --read-data) the in-process coordinator also gets the
// private key, to read chunks back itself: only the password or identity
// gives that. A repository that does not exist is an error: bulkctl init
// makes one.
func backupAccess(ctx context.Context, c *common, e *env, opens bool) (*access, error) {
	name, err := repoArg(c.repo)
	if err != nil {
		return nil, err
	}
	repo, err := service.Repos(c.s3Endpoint, 0, nil, nil).Get(ctx, name, false)
	if err != nil {
		return nil, err
	}
	if !repo.Encrypted() {
		return nil, nil
	}
	if !opens && os.Getenv(service.EnvWriteKeyFile) != "" && os.Getenv(envPasswordFile) == "" && os.Getenv(envPassword) == "" && os.Getenv(envIdentityFile) == "" {
		keys, err := service.WriteKeysFromEnv()
		if err != nil {
			return nil, err
		}
		creds, err := keys(repo.Config())
		if err != nil {
			return nil, err
		}
		if creds.Write.Meta == nil {
			return nil, fmt.Errorf("%s holds a worker's write key, which cannot write snapshots: a backup needs the coordinator's (bulkctl key write-key --for coordinator)",
				service.EnvWriteKeyFile)
		}
		if err := repo.CheckKey(creds.Write); err != nil {
			return nil, err
		}
		return writeAccess(creds.Write), nil
	}
	u, err := unlock(ctx, repo, e.stderr)
	if err != nil {
		return nil, err
	}
	acc := writeAccess(&u.Keys.WriteKey)
	if opens {
		creds := repository.Credentials{Write: &u.Keys.WriteKey, Open: keyring.NewOpener(u.Keys.Private)}
		acc.coordinator = func(repository.Config) (repository.Credentials, error) { return creds, nil }
	}
	return acc, nil
}

// grantTTL is how long a restore's grant may be used: long enough for the
// largest restore, resumed after a coordinator restart; the grant is
// deleted when the job ends.
const grantTTL = 7 * 24 * time.Hour

// grantRestore gives the target hosts of restore job jobID the keys of the
// chunks of snap and no others (docs/encryption.md section 8): it reads
// each chunk's header for its writer session, derives its key with the
// private key, wraps them all to the hosts' recipients and stores the
// grant in the repository, where the hosts' readers find it. A chunk
// missing or damaged is left out: the restore reports it.
func grantRestore(ctx context.Context, repo *repository.Repository, u *repository.Unlocked, snap *manifest.Snapshot, paths []string,
	jobID string, recipients []age.Recipient) error {
	ids, err := restoreChunks(snap, paths)
	if err != nil {
		return err
	}
	g := keyring.NewGrant(repo.Config().ID, jobID, snap.ID, time.Now().Add(grantTTL))
	opener := keyring.NewOpener(u.Keys.Private)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan string)
	)
	for range min(16, len(ids)) {
		wg.Go(func() {
			for h := range next {
				id, err := chunk.ParseID(h)
				if err != nil {
					continue // the restore names it
				}
				st, err := repo.StatChunk(ctx, id)
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = err
				case err == nil && st.State == repository.ChunkIntact:
					if aerr := g.Add(opener, st.Header.Ephemeral, st.Header.ID); aerr != nil && firstErr == nil {
						firstErr = aerr
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, h := range ids {
		next <- h
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("grant the restore's keys: %w", firstErr)
	}
	wrapped, err := keyring.WrapForJob(g, recipients...)
	if err != nil {
		return err
	}
	return repo.PutGrant(ctx, jobID, wrapped)
}

// restoreChunks returns the names of the stored chunks a restore of snap
// reads: all of them, or with paths (manifest form, as resolvePaths
// returns them) those the coordinator's plan of that restore reads
// (plan.Restore), so that a grant opens no file outside the selection.
func restoreChunks(snap *manifest.Snapshot, paths []string) ([]string, error) {
	chunks := snap.Chunks
	if len(paths) > 0 {
		rp, err := plan.Restore(snap, snap.WholeListing(), paths)
		if err != nil {
			return nil, err
		}
		chunks = rp.Chunks
	}
	seen := make(map[string]bool)
	var ids []string
	for _, ch := range chunks {
		if !ch.Zero && !seen[ch.Hash] {
			seen[ch.Hash] = true
			ids = append(ids, ch.Hash)
		}
	}
	return ids, nil
}

// restoreRecipients returns the recipients a restore's grant is wrapped
// to: the in-process reader's, or those the targets' readers announce,
// each trusted (trustedRecipients).
func restoreRecipients(ctx context.Context, s *session, targets []queue.Endpoint, stderr io.Writer) ([]age.Recipient, error) {
	if s.fleet != nil {
		return []age.Recipient{s.fleet.Recipient()}, nil
	}
	workers, err := announcedReaders(ctx, s.js, targets)
	if err != nil {
		return nil, err
	}
	var out []age.Recipient
	done := make(map[string]bool)
	for _, t := range targets {
		if done[t.Host] {
			continue
		}
		done[t.Host] = true
		rs, err := trustedRecipients(workers, t.Host, stderr)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	if len(out) == 0 {
		return nil, errors.New("no target host to grant the restore to")
	}
	return out, nil
}

// announceWait is how long a restore waits for the targets' readers to
// announce their host keys: a reader started a moment ago announces itself
// within a second or two of the coordinator's being up.
const announceWait = 10 * time.Second

// announcedReaders lists the live workers once a reader of every target
// host has announced a host key, or when announceWait has passed (the
// caller then says which host has none).
func announcedReaders(ctx context.Context, js jetstream.JetStream, targets []queue.Endpoint) ([]queue.WorkerStatus, error) {
	deadline := time.Now().Add(announceWait)
	for {
		workers, err := queue.ListWorkers(ctx, js)
		if err != nil {
			return nil, err
		}
		missing := slices.ContainsFunc(targets, func(t queue.Endpoint) bool {
			return !slices.ContainsFunc(workers, func(w queue.WorkerStatus) bool {
				return w.Role == queue.RoleReader && w.Host == t.Host && w.Recipient != ""
			})
		})
		if !missing || time.Now().After(deadline) {
			return workers, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
