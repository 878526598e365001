package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

// restoreResult is what `restore --json` prints.
type restoreResult struct {
	SnapshotID string   `json:"snapshot_id"`
	JobID      string   `json:"job_id"`
	Targets    []string `json:"targets"`
	Bytes      int64    `json:"bytes"`
	Files      int      `json:"files,omitempty"`
	Seconds    float64  `json:"seconds"`
	MBps       float64  `json:"mb_per_s"`
	Warnings   []string `json:"warnings,omitempty"`
}

func runRestore(ctx context.Context, e *env, args []string) (err error) {
	var c common
	fs := newFlagSet("restore", &c)
	overwrite := fs.Bool("overwrite", false, "replace existing target files")
	var paths stringList
	fs.Var(&paths, "path", "restore only this file or directory of a files-mode snapshot (repeatable)")
	ff := addFilterFlags(fs, "source-path")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError("want SNAPSHOT and at least one TARGET")
	}
	repo, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	snapRef, filter := pos[0], ff.filter()
	// An encrypted repository is opened here, with its password or
	// identity: the restore's hosts get the keys of the chunks it reads
	// and no more (grantRestore), the fleet nothing else.
	enc, err := openForRestore(ctx, &c, e, snapRef, filter)
	if err != nil {
		return err
	}
	var acc *access
	if enc != nil {
		snapRef = enc.snap.ID // the snapshot the grant is for
		if c.natsURL == "" {
			acc = writeAccess(&enc.unlocked.Keys.WriteKey)
		}
	}
	var known *manifest.Snapshot
	if enc != nil {
		known = enc.snap
	}
	snapRef, paths = resolvePaths(ctx, &c, e, snapRef, filter, paths, known)
	s, err := openSession(ctx, &c, e.stderr, acc)
	if err != nil {
		return err
	}
	defer func() { err = s.finish(err) }()
	req := &queue.RestoreRequest{V: queue.MessageVersion, JobID: newJobID(), Repo: repo, Snapshot: snapRef, Overwrite: *overwrite, Paths: paths, Filter: filter}
	res := restoreResult{JobID: req.JobID}
	for _, arg := range pos[1:] {
		t, err := s.endpoint(arg)
		if err != nil {
			return err
		}
		req.Targets = append(req.Targets, t)
		res.Targets = append(res.Targets, t.String())
	}
	if enc != nil {
		recipients, err := restoreRecipients(ctx, s, req.Targets, e.stderr)
		if err != nil {
			return err
		}
		if err := grantRestore(ctx, enc.repo, enc.unlocked, enc.snap, paths, req.JobID, recipients); err != nil {
			return err
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = enc.repo.DeleteGrant(dctx, req.JobID)
		}()
	}
	ev, err := s.run(ctx, queue.SubjectRequestRestore, req, req.JobID, e.stderr, c.json)
	if err != nil {
		return err
	}
	if ev.State != queue.StateSucceeded {
		return errors.New(ev.Error)
	}
	res.SnapshotID, res.Bytes, res.Seconds = ev.SnapshotID, ev.Stats.SourceBytes*int64(len(req.Targets)), ev.Stats.Seconds
	res.Files, res.Warnings = ev.Stats.Files, ev.Warnings
	if res.Seconds > 0 {
		res.MBps = float64(res.Bytes) / 1e6 / res.Seconds
	}
	if c.json {
		if err := json.NewEncoder(e.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		for _, t := range res.Targets {
			fmt.Fprintf(e.stdout, "restored snapshot %s to %s\n", res.SnapshotID, t)
		}
		if res.Files > 0 {
			fmt.Fprintf(e.stdout, "  %s, ", plural(res.Files, "file"))
		} else {
			fmt.Fprint(e.stdout, "  ")
		}
		fmt.Fprintf(e.stdout, "%s in %.2fs, %.0f MB/s\n", config.FormatBytes(res.Bytes), res.Seconds, res.MBps)
		printWarnings(e, ev.Stats.Warnings, res.Warnings)
	}
	if ev.Stats.Warnings > 0 {
		return &exitCodeError{code: exitWarnings, err: fmt.Errorf("restored with %s (entries not restored)", plural(ev.Stats.Warnings, "warning"))}
	}
	return nil
}

// resolvePaths turns --path values into the paths of the snapshot's tree,
// in manifest form (what requests carry: a name that is not UTF-8 text is
// encoded). A path is relative to the backed-up directory, or absolute as
// it was on the host: that needs the directory the snapshot backed up, so
// then the snapshot is looked up here and the request names it by ID, so
// the coordinator restores the snapshot the paths were resolved in. Where
// the repository cannot be read from here (it may be reachable only by
// the fleet), an absolute path is taken relative to the backed-up
// directory, and the coordinator's error says which path to use. known,
// if set, is the snapshot already loaded (an encrypted restore's): the
// repository is not opened again.
func resolvePaths(ctx context.Context, c *common, e *env, snapRef string, filter *manifest.Filter, paths []string, known *manifest.Snapshot) (string, []string) {
	if len(paths) == 0 {
		return snapRef, nil
	}
	root := ""
	if known != nil {
		snapRef, root = known.ID, known.Path
	} else if slices.ContainsFunc(paths, func(p string) bool { return strings.HasPrefix(p, "/") }) {
		if repo, _, err := openRepo(ctx, c, e, needMeta); err == nil {
			if snap, err := repo.FindSnapshotMatching(ctx, snapRef, filter); err == nil {
				snapRef, root = snap.ID, snap.Path
			}
		}
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = manifest.TreePath(root, p)
	}
	return snapRef, out
}

// encryptedRestore is what a restore from an encrypted repository holds:
// the repository open with its keys, and the snapshot to restore.
type encryptedRestore struct {
	repo     *repository.Repository
	unlocked *repository.Unlocked
	snap     *manifest.Snapshot
}

// openForRestore opens the repository of a restore when it is encrypted,
// with the secrets of the environment, and finds the snapshot; nil for a
// plaintext repository (or one this host cannot reach: the fleet reports
// it then).
func openForRestore(ctx context.Context, c *common, e *env, ref string, filter *manifest.Filter) (*encryptedRestore, error) {
	name, err := repoArg(c.repo)
	if err != nil {
		return nil, err
	}
	locked, err := service.Repos(c.s3Endpoint, 0, nil, nil).Get(ctx, name, false)
	if err != nil {
		if c.natsURL != "" && !errors.Is(err, repository.ErrNotRepository) {
			return nil, nil // reachable by the fleet only, if at all: a plaintext repository, or the fleet's error
		}
		return nil, err
	}
	if !locked.Encrypted() {
		return nil, nil
	}
	repo, u, err := openRepo(ctx, c, e, needAll)
	if err != nil {
		return nil, err
	}
	snap, err := repo.FindSnapshotMatching(ctx, ref, filter)
	if err != nil {
		return nil, err
	}
	return &encryptedRestore{repo: repo, unlocked: u, snap: snap}, nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
