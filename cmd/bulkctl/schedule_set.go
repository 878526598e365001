package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

func init() {
	commandHelp["schedule set"] = `Usage: bulkctl schedule set NAME [--cron "30 3 * * *"] [--timezone ZONE] [-r REPO] [--level L] [--chunk-size SIZE]
                        [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]
                        [--keep-monthly N] [--keep-yearly N] [--keep-within 1y6m] --nats URL [flags]

Change a schedule in place: only the values given change; a keep rule
given replaces that rule of the policy (0 turns it off). It keeps its
name, source, pause state and history (its last run and skip, and the jobs
they started). A new --cron or --timezone applies from now on: windows of
the new timing that have already passed do not fire. To back up another
source, add another schedule.
`
}

// scheduleSet changes the values given on the command line of a schedule
// (the environment and configuration file change nothing here: a BULK_REPO
// meant for backups must not move a schedule's repository).
func scheduleSet(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("schedule set", &c)
	cronExpr := fs.String("cron", "", `the new cron expression "MINUTE HOUR DAY MONTH WEEKDAY"`)
	timezone := fs.String("timezone", "", "the new IANA time zone the cron expression is read in")
	var chunkSize config.Size
	fs.Var(&chunkSize, "chunk-size", "the new chunk size, a multiple of 4KiB")
	level := fs.String("level", "", "the new zstd level: fastest, default, better or best")
	var keep keepFlags
	keep.register(fs)
	given := map[string]bool{}
	pos, err := parseGiven(e, fs, args, given)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one schedule NAME, got %d arguments", len(pos))
	}
	req := &queue.ScheduleSetRequest{V: queue.MessageVersion, Name: pos[0]}
	if given["cron"] {
		req.Cron = cronExpr
	}
	if given["timezone"] {
		req.Timezone = timezone
	}
	if given["repo"] {
		repo, err := repoArg(c.repo)
		if err != nil {
			return err
		}
		req.Repo = &repo
	}
	if given["level"] {
		if _, err := chunk.ParseLevel(*level); err != nil {
			return usageError("--level: %v", err)
		}
		req.Level = level
	}
	if given["chunk-size"] {
		if err := layout.CheckChunkSize(int64(chunkSize)); err != nil {
			return usageError("--chunk-size: %v", err)
		}
		size := int64(chunkSize)
		req.ChunkSize = &size
	}
	for _, f := range []struct {
		name string
		n    countFlag
		to   **int
	}{{"keep-last", keep.last, &req.KeepLast}, {"keep-hourly", keep.hourly, &req.KeepHourly}, {"keep-daily", keep.daily, &req.KeepDaily},
		{"keep-weekly", keep.weekly, &req.KeepWeekly}, {"keep-monthly", keep.monthly, &req.KeepMonthly}, {"keep-yearly", keep.yearly, &req.KeepYearly}} {
		if given[f.name] {
			*f.to = new(int(f.n))
		}
	}
	if given["keep-within"] {
		req.KeepWithin = new("")
		if !keep.within.Zero() {
			*req.KeepWithin = keep.within.String()
		}
	}
	if req.Empty() {
		return usageError("nothing to change: give --cron, --timezone, -r, --level, --chunk-size or a --keep-* rule")
	}
	s, err := remoteSession(ctx, &c, e)
	if err != nil {
		return err
	}
	defer s.close()
	var sched queue.Schedule
	if err := call(ctx, s.nc, queue.SubjectAPIScheduleSet, req, &sched); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(sched)
	}
	if sched.Kind == queue.KindPrune {
		fmt.Fprintf(e.stdout, "schedule %s changed: prune %s at %q (%s); next run %s\n",
			sched.Name, sched.Repo, sched.Cron, sched.Timezone, nextRun(&sched))
		return nil
	}
	fmt.Fprintf(e.stdout, "schedule %s changed: %s -> %s at %q (%s), level %s, chunk size %s; next run %s\n",
		sched.Name, sched.Source, sched.Repo, sched.Cron, sched.Timezone, sched.Level, config.FormatBytes(sched.ChunkSize), nextRun(&sched))
	fmt.Fprintf(e.stdout, "after each backup: %s\n", keepPhrase(sched.KeepPolicy))
	return nil
}
