package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

func init() {
	commandHelp["schedule set"] = `Usage: bulkctl schedule set NAME [--cron "30 3 * * *"] [--timezone ZONE] [-r REPO] [--level L] [--chunk-size SIZE] [--keep-last N] --nats URL [flags]

Change a schedule in place: only the values given change. It keeps its
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
	keepLast := fs.Int("keep-last", 0, "the new number of snapshots of the source to keep after each backup (the rest of the keep policy stays)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one schedule NAME, got %d arguments", len(pos))
	}
	given := givenFlags(args)
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
	if given["keep-last"] {
		if *keepLast < 0 {
			return usageError("--keep-last must not be negative")
		}
		req.KeepLast = keepLast
	}
	if req.Cron == nil && req.Timezone == nil && req.Repo == nil && req.Level == nil && req.ChunkSize == nil && req.KeepLast == nil {
		return usageError("nothing to change: give --cron, --timezone, -r, --level, --chunk-size or --keep-last")
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
	fmt.Fprintf(e.stdout, "schedule %s changed: %s -> %s at %q (%s), level %s, chunk size %s; next run %s\n",
		sched.Name, sched.Source, sched.Repo, sched.Cron, sched.Timezone, sched.Level, config.FormatBytes(sched.ChunkSize), nextRun(&sched))
	return nil
}

// givenFlags returns the names of the flags args gives (up to "--").
func givenFlags(args []string) map[string]bool {
	given := map[string]bool{}
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		given[name] = true
	}
	return given
}
