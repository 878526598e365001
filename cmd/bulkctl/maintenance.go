package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// runMaintenance submits a prune or check job (in the in-process fleet, or
// to a running coordinator), follows it, and returns its final record.
// readsData says the job reads chunks back (check --read-data): in an
// encrypted repository only an in-process coordinator given the private
// key can.
func runMaintenance(ctx context.Context, e *env, c *common, subject string, req any, jobID string, readsData bool) (*queue.Job, error) {
	var acc *access
	if c.natsURL == "" { // a remote fleet holds its own keys
		var err error
		if acc, err = backupAccess(ctx, c, e, readsData); err != nil {
			return nil, err
		}
	}
	s, err := openSession(ctx, c, e.stderr, acc)
	if err != nil {
		return nil, err
	}
	var job *queue.Job
	err = func() error {
		ev, err := s.run(ctx, subject, req, jobID, e.stderr, c.json)
		if err != nil {
			return err
		}
		if ev.State != queue.StateSucceeded {
			return errors.New(ev.Error)
		}
		job, err = getJob(ctx, s, jobID)
		return err
	}()
	return job, s.finish(err)
}

func runPrune(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("prune", &c)
	dryRun := fs.Bool("dry-run", false, "count what would be deleted; delete nothing")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	repo, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	jobID := newJobID()
	job, err := runMaintenance(ctx, e, &c, queue.SubjectRequestPrune, &queue.PruneRequest{V: queue.MessageVersion, JobID: jobID, Repo: repo, DryRun: *dryRun}, jobID, false)
	if err != nil {
		return err
	}
	p := job.Pruned
	if p == nil {
		return fmt.Errorf("job %s succeeded without a prune's result", jobID)
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(p)
	}
	fmt.Fprintf(e.stdout, "prune %s of %s: %s in %d shards\n", p.ID, repo, plural(p.Snapshots, "snapshot"), p.Shards)
	fmt.Fprintf(e.stdout, "  stored      %s, %s\n", plural(int(p.Chunks), "chunk"), config.FormatBytes(p.Bytes))
	fmt.Fprintf(e.stdout, "  unnamed     %s, %s (named by no snapshot)\n", plural(int(p.Condemned), "chunk"), config.FormatBytes(p.CondemnedBytes))
	if p.DryRun {
		fmt.Fprintf(e.stdout, "dry run: would delete up to %s (%s); deleted nothing\n", plural(int(p.Condemned), "chunk"), config.FormatBytes(p.CondemnedBytes))
		return nil
	}
	fmt.Fprintf(e.stdout, "  deleted     %s, %s\n", plural(int(p.Deleted), "chunk"), config.FormatBytes(p.DeletedBytes))
	if p.Kept > 0 {
		fmt.Fprintf(e.stdout, "  kept        %s that backups named while the prune ran\n", plural(int(p.Kept), "chunk"))
	}
	if p.Left > 0 {
		fmt.Fprintf(e.stdout, "  left        %s for the next prune\n", plural(int(p.Left), "chunk"))
	}
	return nil
}

// subsetFlag is --read-data-subset: a percentage ("10%", "10") or a
// fraction ("0.1"), kept as a fraction.
type subsetFlag float64

func (s *subsetFlag) String() string { return strconv.FormatFloat(float64(*s)*100, 'g', -1, 64) + "%" }
func (s *subsetFlag) Set(v string) error {
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil {
		return fmt.Errorf("%q: want a percentage such as 10%%", v)
	}
	if pct || f > 1 {
		f /= 100
	}
	if f <= 0 || f > 1 {
		return fmt.Errorf("%q: want a percentage above 0%% and at most 100%%", v)
	}
	*s = subsetFlag(f)
	return nil
}

func runCheck(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("check", &c)
	readData := fs.Bool("read-data", false, "also read every chunk back and check its hash")
	var subset subsetFlag
	fs.Var(&subset, "read-data-subset", "read back only this share of the chunks, such as 10% (another share each run)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	if *readData && subset > 0 {
		return usageError("--read-data reads every chunk; --read-data-subset only a share: give one")
	}
	repo, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	jobID := newJobID()
	req := &queue.CheckRequest{V: queue.MessageVersion, JobID: jobID, Repo: repo, ReadData: *readData || subset > 0, Subset: float64(subset)}
	job, err := runMaintenance(ctx, e, &c, queue.SubjectRequestCheck, req, jobID, req.ReadData)
	if err != nil {
		return err
	}
	rep := job.Checked
	if rep == nil {
		return fmt.Errorf("job %s succeeded without a check's report", jobID)
	}
	if c.json {
		if err := json.NewEncoder(e.stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printCheck(e, rep)
	}
	bad := rep.Missing + rep.Damaged
	if bad == 0 && len(rep.Unreadable) == 0 {
		return nil
	}
	var what []string
	if rep.Missing > 0 {
		what = append(what, plural(int(rep.Missing), "missing chunk"))
	}
	if rep.Damaged > 0 {
		what = append(what, plural(int(rep.Damaged), "damaged chunk"))
	}
	if len(rep.Unreadable) > 0 {
		what = append(what, plural(len(rep.Unreadable), "unreadable snapshot"))
	}
	msg := fmt.Sprintf("repository %s: %s", repo, strings.Join(what, ", "))
	if bad > 0 {
		msg += fmt.Sprintf(" named by %s; recorded, so the next backup that produces them stores them again", plural(len(rep.Affected), "snapshot"))
	}
	return errors.New(msg)
}

func printCheck(e *env, rep *queue.CheckReport) {
	for _, f := range rep.Findings {
		fmt.Fprintf(e.stdout, "%-8s chunk %s: %s\n", strings.ToUpper(f.State), f.Chunk, f.Problem)
	}
	if n := int(rep.Missing+rep.Damaged) - len(rep.Findings); n > 0 {
		fmt.Fprintf(e.stdout, "         and %s more\n", plural(n, "chunk"))
	}
	for _, u := range rep.Unreadable {
		fmt.Fprintf(e.stdout, "UNREADABLE snapshot %s\n", u)
	}
	for _, a := range rep.Affected {
		fmt.Fprintf(e.stdout, "AFFECTED snapshot %s (%s:%s, %s): %s\n", a.ID, a.Host, a.Path, a.Time.Local().Format("2006-01-02 15:04:05"), plural(a.Chunks, "bad chunk"))
		for _, p := range a.Files {
			fmt.Fprintf(e.stdout, "         %s\n", manifest.Display(p))
		}
		if more := a.FilesTotal - len(a.Files); more > 0 {
			fmt.Fprintf(e.stdout, "         and %s more\n", plural(more, "file"))
		}
	}
	fmt.Fprintf(e.stdout, "%s checked: %s named (%s stored, %s named by none)", plural(rep.Snapshots, "snapshot"),
		plural(int(rep.Referenced), "chunk"), plural(int(rep.Stored), "chunk"), plural(int(rep.Unreferenced), "chunk"))
	if rep.ReadData {
		fmt.Fprintf(e.stdout, "; %s read back (%s)", plural(int(rep.Read), "chunk"), config.FormatBytes(rep.ReadBytes))
	}
	fmt.Fprintln(e.stdout)
	if rep.Repaired > 0 {
		fmt.Fprintf(e.stdout, "%s recorded as damaged before read back whole: stored again since\n", plural(int(rep.Repaired), "chunk"))
	}
	if rep.Missing+rep.Damaged == 0 && len(rep.Unreadable) == 0 {
		fmt.Fprintln(e.stdout, "OK")
	}
}
