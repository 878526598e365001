package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/dispatch"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// jobRun is the state of one job while a coordinator drives it.
type jobRun struct {
	c       *Coordinator
	job     *queue.Job
	logger  *slog.Logger
	started time.Time

	rec   *records // the job's completions, from follow
	dones chan any // completions as they come (queue.DecodeDone's values)
	stop  func()
	// tolerate, if set, decides whether a unit's failure is one the job
	// goes on past (the unit then counts as done): a tree restore leaves
	// out the files of a damaged chunk.
	tolerate func(u dispatch.Unit, we *WorkError) bool

	lastSave time.Time
}

// cleanup stops following the job's completions.
func (jr *jobRun) cleanup(ctx context.Context) {
	if jr.stop != nil {
		jr.stop()
	}
}

// purge removes the job's outstanding work and, when the job has ended, its
// completions.
func (jr *jobRun) purge(ctx context.Context, completions bool) {
	if s, err := jr.c.js.Stream(ctx, queue.StreamWork); err == nil {
		_ = s.Purge(ctx, jetstream.WithPurgeSubject(queue.JobWorkFilter(jr.job.ID)))
	}
	if s, err := jr.c.js.Stream(ctx, queue.StreamReady); err == nil {
		_ = s.Purge(ctx, jetstream.WithPurgeSubject(queue.ReadySubject(jr.job.ID)))
	}
	if s, err := jr.c.js.Stream(ctx, queue.StreamTasks); err == nil {
		_ = s.Purge(ctx, jetstream.WithPurgeSubject(queue.JobTaskFilter(jr.job.ID)))
	}
	if completions {
		if s, err := jr.c.js.Stream(ctx, queue.StreamDone); err == nil {
			_ = s.Purge(ctx, jetstream.WithPurgeSubject(queue.DoneFilter(jr.job.ID)))
		}
	}
}

// publishFunc sends the work item of one unit; attempt counts how often it
// was sent before, msgID deduplicates it.
type publishFunc func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error

// phase publishes units, keeping at most Window outstanding, and returns
// when each has completed (dispatch.Run). publish sends one unit's work
// item; completions come from the job's completion stream, recorded once
// each.
func (jr *jobRun) phase(ctx context.Context, units iter.Seq[dispatch.Unit], publish publishFunc) error {
	return jr.phaseWith(ctx, units, publish, jr.c.cfg.Window, jr.c.cfg.ChunkTimeout)
}

// phaseWith is phase with its own window and re-issue timeout.
func (jr *jobRun) phaseWith(ctx context.Context, units iter.Seq[dispatch.Unit], publish publishFunc, window int, timeout time.Duration) error {
	cfg := jr.c.cfg
	ticker := time.NewTicker(cfg.ProgressInterval)
	defer ticker.Stop()
	completions := make(chan dispatch.Completion)
	phaseCtx, stop := context.WithCancel(ctx)
	// The goroutine below records completions, and with them the job's
	// progress: it has ended when phase returns, so that nothing writes
	// the job while the caller saves it.
	var recording sync.WaitGroup
	defer func() {
		stop()
		recording.Wait()
	}()
	recording.Go(func() {
		for {
			select {
			case <-phaseCtx.Done():
				return
			case v := <-jr.dones:
				c, news := jr.rec.add(v)
				if !news {
					continue
				}
				if c.Err != nil {
					var we *WorkError
					if jr.tolerate != nil && errors.As(c.Err, &we) && jr.tolerate(c.Unit, we) {
						c.Err = nil
					} else {
						c.Err = jr.failure(c.Err)
					}
				}
				select {
				case completions <- c:
				case <-phaseCtx.Done():
					return
				}
			}
		}
	})
	err := dispatch.Run(ctx, dispatch.Config{
		Window: window, Timeout: timeout, MaxAttempts: cfg.MaxAttempts, Stall: cfg.StallTimeout,
		Ticks: ticker.C, Transient: isTransient, OnTick: func() { jr.progress(ctx) }, Logger: jr.logger,
	}, units, jr.rec.done, completions, func(ctx context.Context, u dispatch.Unit, attempt int) error {
		msgID := fmt.Sprintf("%s.%s.%d.%d.e%d.a%d", jr.job.ID, u.Op, u.Target, u.Index, jr.job.Epoch, attempt)
		return publish(ctx, u, attempt, msgID)
	})
	if errors.Is(err, dispatch.ErrStalled) {
		err = fmt.Errorf("%w; %s", err, jr.stallHint(ctx))
	}
	return err
}

// stallHint says which part of the fleet a stalled job is waiting for: a
// host whose reader no longer answers, a repository that does not answer,
// or else the compressors (backup) or the readers' writes (restore).
func (jr *jobRun) stallHint(ctx context.Context) string {
	var hosts []string
	if b := jr.job.Backup; b != nil {
		hosts = append(hosts, b.Source.Host)
	}
	if r := jr.job.Restore; r != nil {
		for _, t := range r.Targets {
			if !slices.Contains(hosts, t.Host) {
				hosts = append(hosts, t.Host)
			}
		}
	}
	for _, host := range hosts {
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := jr.c.nc.RequestWithContext(reqCtx, queue.StatSubject(host),
			queue.Encode(&queue.StatRequest{V: queue.MessageVersion}))
		cancel()
		if err != nil {
			return fmt.Sprintf("the reader of host %q is gone (it does not answer: %v); start `reader --host %s` again and resubmit", host, err, host)
		}
	}
	repo, who := "", "the compressors cannot store chunks"
	if b := jr.job.Backup; b != nil {
		repo = b.Repo
	}
	if r := jr.job.Restore; r != nil {
		repo, who = r.Repo, "the readers cannot fetch chunks"
	}
	if err := jr.probeRepo(ctx, repo); err != nil {
		return fmt.Sprintf("the repository %s does not answer (%v): %s", repo, err, who)
	}
	if jr.job.Kind == queue.KindBackup {
		return "the reader and the repository answer: are the compressors running?"
	}
	return "the readers and the repository answer but complete nothing"
}

// probeRepo checks, within a few seconds, that the repository answers.
func (jr *jobRun) probeRepo(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	repo, err := jr.c.cfg.Repos.Get(ctx, name, false)
	if err != nil {
		return err
	}
	return repo.Ping(ctx)
}

// rate updates the job's throughput and ETA.
func (jr *jobRun) rate() {
	p := &jr.job.Progress
	if secs := time.Since(jr.started).Seconds(); secs > 0 {
		p.MBps = float64(p.BytesDone) / 1e6 / secs
		p.ETASeconds = 0
		if p.MBps > 0 {
			p.ETASeconds = float64(p.BytesTotal-p.BytesDone) / 1e6 / p.MBps
		}
	}
}

// progress publishes a progress event and, now and then, saves the record.
func (jr *jobRun) progress(ctx context.Context) {
	jr.rec.mu.Lock() // the completions of a phase update the progress meanwhile
	defer jr.rec.mu.Unlock()
	jr.rate()
	jr.c.publishEvent(ctx, jr.job, "")
	if time.Since(jr.lastSave) > 5*time.Second {
		jr.lastSave = time.Now()
		if err := jr.c.saveJob(ctx, jr.job); err != nil {
			jr.logger.WarnContext(ctx, "save progress", "err", err)
		}
	}
}

// backup drives a backup job to a committed snapshot: it decides how to read
// the source (once: a resumed job keeps its mode), then runs a volume or a
// files backup and commits the manifest it yields.
func (jr *jobRun) backup(ctx context.Context) (err error) {
	req := jr.job.Backup
	var stat *queue.StatReply
	if jr.job.Mode == "" {
		if stat, err = jr.chooseMode(ctx); err != nil {
			return err
		}
	}
	readPath := cmp.Or(jr.job.Device, req.Source.Path)
	if jr.job.Mode == plan.ModeVolume && (stat == nil || jr.job.Device != "") {
		// A resumed job, or a directory read through its device: the
		// choice's stat did not describe what is read.
		if stat, err = jr.waitForReader(ctx, req.Source.Host, readPath, 0); err != nil {
			return err
		}
	}
	repo, err := jr.c.cfg.Repos.Get(ctx, req.Repo, true) // only once the source is known good
	if err != nil {
		return err
	}
	// Registered before any chunk is reused or stored, so that a prune
	// waits for this backup; removed when it ends, kept when the
	// coordinator stops (the job resumes).
	reg, err := jr.register(ctx, repo)
	if err != nil {
		return err
	}
	defer func() {
		shutdown := ctx.Err() != nil && !errors.Is(context.Cause(ctx), errCancelled)
		if cerr := reg.close(context.WithoutCancel(ctx), shutdown); cerr != nil {
			jr.logger.WarnContext(ctx, "the backup's registration is left; it expires by itself", "err", cerr)
		}
	}()
	if jr.job.SnapshotID == "" {
		jr.job.SnapshotID = repository.NewSnapshotID()
	}
	var snap *manifest.Snapshot
	if jr.job.Mode == plan.ModeFiles {
		snap, err = jr.backupFiles(ctx, repo)
	} else {
		snap, err = jr.backupVolume(ctx, repo, stat, readPath)
	}
	if err != nil {
		jr.purge(context.WithoutCancel(ctx), ctx.Err() == nil || errors.Is(context.Cause(ctx), errCancelled))
		return err
	}
	jr.job.State = queue.StateCommitting
	jr.job.Stats = snap.Stats // what is being committed
	jr.rate()
	jr.c.publishEvent(ctx, jr.job, "")
	snap.Hash = repo.HashName() // the chunks' IDs are the repository's: SHA-256, or its keyed MAC
	if err := reg.current(); err != nil {
		jr.purge(context.WithoutCancel(ctx), true)
		return err
	}
	if err := repo.SaveSnapshot(ctx, snap); err != nil {
		jr.job.Stats = manifest.Stats{}
		return fmt.Errorf("commit: %w", err)
	}
	jr.purge(ctx, true)
	if jr.job.Schedule != "" {
		jr.c.applyKeep(ctx, jr.job, repo)
	}
	return nil
}

// chooseMode decides once how the job reads its source (plan.ChooseMode)
// and records it in the job; it returns the reader's description of the
// source.
func (jr *jobRun) chooseMode(ctx context.Context) (*queue.StatReply, error) {
	req := jr.job.Backup
	threshold := cmp.Or(req.FilesThreshold, plan.DefaultFilesThreshold)
	var limit int64
	if cmp.Or(req.Mode, plan.ModeAuto) == plan.ModeAuto && req.Selection.Empty() {
		limit = threshold
	}
	stat, err := jr.waitForReader(ctx, req.Source.Host, req.Source.Path, limit)
	if err != nil {
		return nil, err
	}
	choice, chosen, err := selectMode(req, stat)
	if !chosen {
		choice, err = plan.ChooseMode(req.Mode, req.Source.String(), plan.SourceFacts{
			Kind: stat.Kind, Files: stat.Files, MountRoot: stat.MountRoot, Device: stat.Device,
		}, threshold)
	}
	if err != nil {
		return nil, err
	}
	jr.job.Mode, jr.job.Reason, jr.job.Device = choice.Mode, choice.Reason, choice.Device
	jr.logger.InfoContext(ctx, "backup mode chosen", "mode", choice.Mode, "reason", choice.Reason)
	return stat, nil
}

// backupVolume reads the volume at readPath chunk by chunk and returns its
// manifest.
func (jr *jobRun) backupVolume(ctx context.Context, repo *repository.Repository, stat *queue.StatReply, readPath string) (*manifest.Snapshot, error) {
	req := jr.job.Backup
	if err := manifest.CheckVolume(stat.Size, req.ChunkSize); err != nil {
		return nil, err
	}
	if jr.job.Source == nil { // a resumed job keeps what its first epoch saw
		jr.job.Source = &queue.SourceState{Size: stat.Size, MTime: stat.MTime}
	}
	n := layout.Count(stat.Size, req.ChunkSize)
	jr.job.Progress = queue.Progress{ChunksTotal: n, BytesTotal: stat.Size}
	if err := jr.start(ctx); err != nil {
		return nil, err
	}
	all := func(yield func(dispatch.Unit) bool) {
		for i := range n {
			if !yield(dispatch.Unit{Op: queue.OpRead, Index: i}) {
				return
			}
		}
	}
	parent := jr.parent(ctx, repo, manifest.ModeVolume)
	err := jr.phase(ctx, all, func(ctx context.Context, u dispatch.Unit, attempt int, msgID string) error {
		r := layout.At(u.Index, stat.Size, req.ChunkSize)
		item := &queue.ReadChunk{
			V: queue.WorkVersion, JobID: jr.job.ID, Index: r.Index, Attempt: attempt, Repo: req.Repo,
			Path: readPath, Offset: r.Offset, Length: r.Length, Sealed: repo.Encrypted(),
		}
		if parent != nil && u.Index < len(parent.Chunks) {
			if pc := parent.Chunks[u.Index]; !pc.Zero && pc.Offset == r.Offset && pc.Length == r.Length {
				item.Parent = &queue.ParentChunk{Hash: pc.Hash, StoredSize: pc.StoredSize}
			}
		}
		return jr.sendWork(ctx, u.Op, req.Source.Host, item, msgID)
	})
	if err != nil {
		return nil, err
	}
	snap := jr.manifest(stat, n)
	jr.checkUnchanged(ctx, readPath, snap)
	return snap, nil
}

// start saves the job's plan and begins following its completions, after
// removing work an earlier epoch left (it is published again).
func (jr *jobRun) start(ctx context.Context) error {
	if err := jr.c.saveJob(ctx, jr.job); err != nil {
		return err
	}
	jr.purge(ctx, false)
	return jr.follow(ctx)
}

// parent returns the newest snapshot of the same source in the same mode
// (parentID), or nil. A volume's parent must also have the same chunk
// size, so that a reader can recognise its chunks by hash alone.
func (jr *jobRun) parent(ctx context.Context, repo *repository.Repository, mode string) *manifest.Snapshot {
	id := jr.parentID(ctx, repo, mode)
	if id == "" {
		return nil
	}
	full, err := repo.LoadSnapshot(ctx, id)
	if err != nil {
		jr.logger.WarnContext(ctx, "no parent snapshot: loading it failed", "parent", id, "err", err)
		return nil
	}
	jr.logger.InfoContext(ctx, "incremental backup", "parent", id)
	return full
}

// parentID returns the ID of the snapshot a backup of mode compares
// itself with: the newest of the same host, path and mode (and, for a
// volume, chunk size); "" for none.
func (jr *jobRun) parentID(ctx context.Context, repo *repository.Repository, mode string) string {
	req := jr.job.Backup
	snaps, err := repo.SnapshotHeaders(ctx)
	if err != nil {
		jr.logger.WarnContext(ctx, "no parent snapshot: listing failed", "err", err)
		return ""
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		s := snaps[i]
		if s.Host == snapshotHost(req) && s.Path == req.Source.Path && s.Mode == mode && s.ID != jr.job.SnapshotID &&
			(mode == manifest.ModeFiles || s.ChunkSize == req.ChunkSize) {
			return s.ID
		}
	}
	return ""
}

// manifest builds the snapshot from the recorded completions.
func (jr *jobRun) manifest(stat *queue.StatReply, n int) *manifest.Snapshot {
	req := jr.job.Backup
	snap := &manifest.Snapshot{
		Version: manifest.VersionFor(manifest.ModeVolume), ID: jr.job.SnapshotID, JobID: jr.job.ID, Time: jr.job.Started,
		Host: req.Source.Host, Path: req.Source.Path, Mode: manifest.ModeVolume, SourceKind: stat.Kind, Device: jr.job.Device, FileMode: stat.FileMode,
		Size: stat.Size, ChunkSize: req.ChunkSize, Hash: "sha256", Compression: "zstd", Level: req.Level,
		Chunks: make([]manifest.Chunk, n),
	}
	label(snap, req)
	st := &snap.Stats
	st.SourceBytes, st.Chunks = stat.Size, n
	seen := make(map[string]bool)
	for i := range n {
		d := jr.rec.chunk(i)
		c := manifest.Chunk{Offset: int64(i) * req.ChunkSize, Length: d.Length}
		if d.Zero {
			c.Zero = true
			st.ZeroChunks++
		} else {
			c.Hash, c.StoredSize = d.Hash, d.StoredSize
			if !seen[d.Hash] {
				seen[d.Hash] = true
				st.StoredBytes += d.StoredSize
				if d.New {
					st.NewChunks++
					st.NewBytes += d.StoredSize
				}
			}
		}
		snap.Chunks[i] = c
	}
	st.Seconds = time.Since(jr.job.Started).Seconds()
	return snap
}

// restore drives a restore job: prepare every target, write the chunks,
// finish every target.
func (jr *jobRun) restore(ctx context.Context) error {
	req := jr.job.Restore
	repo, err := jr.c.cfg.Repos.Get(ctx, req.Repo, false)
	if err != nil {
		return err
	}
	id, err := repo.FindSnapshotID(ctx, cmp.Or(jr.job.SnapshotID, req.Snapshot), req.Filter)
	if err != nil {
		return err
	}
	header, err := repo.LoadSnapshotHeader(ctx, id)
	if err != nil {
		return err
	}
	jr.job.SnapshotID = id
	for _, t := range req.Targets {
		if _, err := jr.waitForReader(ctx, t.Host, "", 0); err != nil {
			return err
		}
	}
	if header.Mode == manifest.ModeFiles {
		// A tree's listing, not the tree assembled: it is walked once.
		snap, listing, err := repo.LoadListing(ctx, id)
		if err != nil {
			return err
		}
		return jr.restoreFiles(ctx, repo, snap, listing)
	}
	snap, err := repo.LoadSnapshot(ctx, id)
	if err != nil {
		return err
	}
	if len(req.Paths) > 0 {
		return fmt.Errorf("snapshot %s is a volume; --path selects files of a files-mode snapshot", snap.ID)
	}
	jr.job.Progress = queue.Progress{ChunksTotal: len(snap.Chunks) * len(req.Targets), BytesTotal: snap.Size * int64(len(req.Targets))}
	if err := jr.start(ctx); err != nil {
		return err
	}
	publish := func(ctx context.Context, u dispatch.Unit, _ int, msgID string) error {
		t := req.Targets[u.Target]
		step := queue.Step{V: queue.WorkVersion, JobID: jr.job.ID, Target: u.Target, Index: u.Index, Path: t.Path}
		var item any
		switch u.Op {
		case queue.OpPrepare:
			item = &queue.PrepareVolume{Step: step, Size: snap.Size, Overwrite: req.Overwrite,
				Keep: jr.c.otherRestores(jr.job.ID), FileMode: snap.FileMode}
		case queue.OpChunk:
			c := snap.Chunks[u.Index]
			item = &queue.WriteChunk{Step: step, Repo: req.Repo, Size: snap.Size,
				Offset: c.Offset, Length: c.Length, Hash: c.Hash, Zero: c.Zero}
		case queue.OpFinish:
			item = &queue.FinishVolume{Step: step, Size: snap.Size, Overwrite: req.Overwrite, FileMode: snap.FileMode}
		case queue.OpAbort:
			item = &queue.AbortRestore{Step: step}
		}
		return jr.sendWork(ctx, u.Op, t.Host, item, msgID)
	}
	perTarget := func(op string) iter.Seq[dispatch.Unit] {
		return func(yield func(dispatch.Unit) bool) {
			for t := range req.Targets {
				if !yield(dispatch.Unit{Op: op, Target: t}) {
					return
				}
			}
		}
	}
	chunks := func(yield func(dispatch.Unit) bool) {
		for i, c := range snap.Chunks {
			for t := range req.Targets {
				if c.Zero && !jr.rec.step(dispatch.Unit{Op: queue.OpPrepare, Target: t}).Device {
					// A hole in a new file is already zero: nothing to write.
					jr.rec.add(&queue.StepDone{Op: queue.OpChunk, Target: t, Index: i, Length: c.Length})
					continue
				}
				if !yield(dispatch.Unit{Op: queue.OpChunk, Target: t, Index: i}) {
					return
				}
			}
		}
	}
	for _, step := range []iter.Seq[dispatch.Unit]{perTarget(queue.OpPrepare), chunks, perTarget(queue.OpFinish)} {
		if err := jr.phase(ctx, step, publish); err != nil {
			var we *WorkError
			if errors.As(err, &we) && we.Failed.Op == queue.OpChunk && we.Failed.Index >= 0 && we.Failed.Index < len(snap.Chunks) {
				jr.recordRestoreDamage(context.WithoutCancel(ctx), repo, err, snap.Chunks[we.Failed.Index].Hash)
			}
			jr.abortRestore(ctx, publish)
			return err
		}
	}
	jr.rate()
	jr.job.Stats = manifest.Stats{SourceBytes: snap.Size, Chunks: len(snap.Chunks), Seconds: time.Since(jr.job.Started).Seconds()}
	jr.purge(ctx, true)
	return nil
}

// dropGrant removes, once a restore of an encrypted repository has ended,
// the grant its client stored for the job's hosts (docs/encryption.md
// section 8), in case the client did not live to do it: a grant is kept
// no longer than its job.
func (jr *jobRun) dropGrant(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	repo, err := jr.c.cfg.Repos.Get(ctx, jr.job.Restore.Repo, false)
	if err != nil || !repo.Encrypted() {
		return
	}
	if err := repo.DeleteGrant(ctx, jr.job.ID); err != nil {
		jr.logger.WarnContext(ctx, "the ended restore's grant may remain in the repository", "err", err)
	}
}

// abortWait bounds how long a failed restore waits for its readers to
// remove their partial files before the job is reported failed.
const abortWait = 30 * time.Second

// abortRestore removes what a restore that did not complete left on its
// targets: its outstanding work, and, unless it was interrupted by
// shutdown (it resumes), its partial files. It waits, up to abortWait, for
// every target's reader to report them removed, so that a failed restore
// leaves no debris by the time it is reported.
func (jr *jobRun) abortRestore(ctx context.Context, publish publishFunc) {
	ended := ctx.Err() == nil || errors.Is(context.Cause(ctx), errCancelled)
	endCtx := context.WithoutCancel(ctx)
	jr.purge(endCtx, ended)
	if !ended {
		return
	}
	targets := len(jr.job.Restore.Targets)
	for t := range targets {
		if err := publish(endCtx, dispatch.Unit{Op: queue.OpAbort, Target: t}, 0, fmt.Sprintf("%s.abort.%d", jr.job.ID, t)); err != nil {
			jr.logger.WarnContext(endCtx, "abort restore", "target", t, "err", err)
		}
	}
	waitCtx, cancel := context.WithTimeout(endCtx, abortWait)
	defer cancel()
	it, err := queue.NewTail(waitCtx, jr.c.js, queue.StreamDone, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{queue.DoneSubject(jr.job.ID, queue.DoneStep)},
	})
	if err != nil {
		jr.logger.WarnContext(endCtx, "partial files of the failed restore may remain", "err", err)
		return
	}
	defer it.Stop()
	aborted := make(map[int]bool)
	for len(aborted) < targets {
		msg, err := it.Next(waitCtx)
		if err != nil {
			jr.logger.WarnContext(endCtx, "partial files of the failed restore may remain: not every reader reported them removed",
				"removed", len(aborted), "targets", targets, "err", err)
			return
		}
		var d queue.StepDone
		if queue.Decode(msg.Data(), &d) == nil && d.Op == queue.OpAbort {
			aborted[d.Target] = true
		}
	}
	jr.purge(endCtx, true)
}

// changedWarning is the warning of a volume backed up while it changed.
const changedWarning = "the source changed while it was read (%s): the snapshot may mix old and new data; " +
	"quiesce the volume (stop what writes it) or back up a filesystem or LVM snapshot of it"

// checkUnchanged asks the source's reader, once every chunk is read,
// whether the volume changed since the backup began (its size, or an image
// file's modification time) and, if so, adds a warning to the snapshot, so
// the backup completes with warnings rather than saying nothing. A block
// device's writes do not show in its node's time: only a change of size can
// be seen there.
func (jr *jobRun) checkUnchanged(ctx context.Context, readPath string, snap *manifest.Snapshot) {
	before := jr.job.Source
	if before == nil {
		return
	}
	now, err := jr.waitForReader(ctx, jr.job.Backup.Source.Host, readPath, 0)
	var why string
	switch {
	case err != nil:
		jr.logger.WarnContext(ctx, "could not check whether the source changed while read", "err", err)
		return
	case now.Size != before.Size:
		why = fmt.Sprintf("its size went from %d to %d bytes", before.Size, now.Size)
	case now.MTime != before.MTime:
		why = fmt.Sprintf("its modification time went from %s to %s",
			time.Unix(0, before.MTime).UTC().Format(time.RFC3339Nano), time.Unix(0, now.MTime).UTC().Format(time.RFC3339Nano))
	default:
		return
	}
	snap.Stats.Warnings++
	jr.warn(fmt.Sprintf(changedWarning, why))
	jr.logger.WarnContext(ctx, "source changed while read", "why", why)
}

// sendWork publishes a work item of op for host, deduplicated by msgID.
func (jr *jobRun) sendWork(ctx context.Context, op, host string, item any, msgID string) error {
	_, err := jr.c.js.Publish(ctx, queue.WorkSubject(op, host, jr.job.ID), queue.Encode(item), jetstream.WithMsgID(msgID))
	return err
}

// failure turns the failure a worker reported into the job's error: one
// sentence saying what failed, where, and why.
func (jr *jobRun) failure(err error) error {
	var we *WorkError
	if !errors.As(err, &we) {
		return err
	}
	f := &we.Failed
	what := ""
	switch {
	case jr.job.Backup != nil && f.Op == queue.OpScan:
		what = "scanning " + jr.job.Backup.Source.String()
	case jr.job.Backup != nil && f.Code == queue.CodeSource:
		what = "reading " + jr.job.Backup.Source.String()
	case jr.job.Backup != nil:
		what = fmt.Sprintf("storing chunk %d of %s", f.Index, jr.job.Backup.Source)
	case jr.job.Restore != nil && f.Target < len(jr.job.Restore.Targets):
		what = "restoring to " + jr.job.Restore.Targets[f.Target].String()
	}
	if what == "" {
		return err
	}
	return &jobError{what: what, err: we}
}

// jobError is a job's error: what it was doing, and the worker's failure.
type jobError struct {
	what string
	err  *WorkError
}

func (e *jobError) Error() string { return e.what + ": " + e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }
