package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

const scheduleUsage = `Usage:
  bulkctl schedule add NAME --source HOST:PATH -r REPO --cron "0 2 * * *" [--timezone Europe/Berlin]
                        [--level fastest] [--chunk-size 4MiB] [--keep-last N] [--keep-daily N] [--keep-weekly N]
                        [--keep-monthly N] [--keep-yearly N] [--keep-hourly N] [--keep-within 1y6m]
                        [--exclude PATTERN]... [--exclude-file FILE]... [--exclude-caches]
                        [--exclude-larger-than SIZE] [--one-file-system] [--tag TAG]... [--host NAME]
  bulkctl schedule add NAME --prune -r REPO --cron "0 4 * * 0" [--timezone Europe/Berlin]
  bulkctl schedule set NAME [--cron "30 3 * * *"] [--timezone ZONE] [-r REPO] [--level L] [--chunk-size SIZE] [--keep-last N]
  bulkctl schedule list
  bulkctl schedule show NAME
  bulkctl schedule pause NAME
  bulkctl schedule resume NAME
  bulkctl schedule rm NAME

Every command takes --json and needs a running coordinator (--nats URL or
BULK_NATS), which starts a backup at each window of the cron expression
(minute hour day-of-month month day-of-week, read in --timezone; UTC by
default). A window that comes while a backup of the same source still runs
is skipped, and "show" says why. After each successful backup the keep
policy (restic's --keep-* rules) forgets the source's other snapshots, and
"show" says what it forgot; a --prune schedule runs "bulkctl prune" on the
repository at each window.
`

func runSchedule(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError("want a schedule command: add, set, list, show, pause, resume or rm")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "add":
		return scheduleAdd(ctx, e, args)
	case "set":
		return scheduleSet(ctx, e, args)
	case "list":
		return scheduleList(ctx, e, args)
	case "show":
		return scheduleNamed(ctx, e, sub, queue.SubjectAPIScheduleGet, args)
	case "pause":
		return scheduleNamed(ctx, e, sub, queue.SubjectAPISchedulePause, args)
	case "resume":
		return scheduleNamed(ctx, e, sub, queue.SubjectAPIScheduleResume, args)
	case "rm":
		return scheduleNamed(ctx, e, sub, queue.SubjectAPIScheduleRm, args)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, scheduleUsage)
		return flag.ErrHelp
	default:
		return usageError("unknown schedule command %q: want add, set, list, show, pause, resume or rm", sub)
	}
}

func scheduleAdd(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("schedule add", &c)
	source := fs.String("source", "", "what to back up, as HOST:PATH (required)")
	cronExpr := fs.String("cron", "", `when: a cron expression "MINUTE HOUR DAY MONTH WEEKDAY", e.g. "0 2 * * *" (required)`)
	timezone := fs.String("timezone", "", "IANA time zone the cron expression is read in, e.g. Europe/Berlin (default UTC)")
	chunkSize := config.Size(layout.DefaultChunkSize)
	fs.Var(&chunkSize, "chunk-size", "chunk size, a multiple of 4KiB (e.g. 4MiB, 24MiB)")
	level := fs.String("level", "fastest", "zstd level: fastest, default, better or best")
	var keep keepFlags
	keep.register(fs)
	prune := fs.Bool("prune", false, "prune the repository at each window instead of backing up a source")
	sf := addSelectionFlags(fs)
	given := map[string]bool{} // on the command line: BULK_HOST, BULK_LEVEL and the like are no mistake
	pos, err := parseGiven(e, fs, args, given)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one schedule NAME, got %d arguments", len(pos))
	}
	if *cronExpr == "" {
		return usageError(`--cron is required (e.g. --cron "0 2 * * *")`)
	}
	repo, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	req := &queue.ScheduleAddRequest{V: queue.MessageVersion, Name: pos[0], Repo: repo, Cron: *cronExpr, Timezone: *timezone}
	if *prune {
		for _, name := range []string{"source", "level", "chunk-size", "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly", "keep-within",
			"exclude", "exclude-file", "exclude-caches", "exclude-larger-than", "one-file-system", "tag", "host"} {
			if given[name] {
				return usageError("--%s does not go with --prune: a prune schedule takes a repository only", name)
			}
		}
		req.Kind = queue.KindPrune
	} else {
		if *source == "" {
			return usageError("--source HOST:PATH is required (or --prune)")
		}
		if req.Source, err = queue.ParseEndpoint(*source); err != nil {
			return usageError("--source: %v", err)
		}
		if err := layout.CheckChunkSize(int64(chunkSize)); err != nil {
			return usageError("--chunk-size: %v", err)
		}
		if _, err := chunk.ParseLevel(*level); err != nil {
			return usageError("--level: %v", err)
		}
		if err := keep.policy().Validate(); err != nil {
			return usageError("%v", err)
		}
		if req.Selection, req.Labels, err = sf.request(); err != nil {
			return err
		}
		req.Level, req.ChunkSize = *level, int64(chunkSize)
		req.KeepPolicy = queue.KeepPolicy{KeepLast: int(keep.last), KeepHourly: int(keep.hourly), KeepDaily: int(keep.daily),
			KeepWeekly: int(keep.weekly), KeepMonthly: int(keep.monthly), KeepYearly: int(keep.yearly)}
		if !keep.within.Zero() {
			req.KeepWithin = keep.within.String()
		}
	}
	s, err := remoteSession(ctx, &c, e)
	if err != nil {
		return err
	}
	defer s.close()
	// The coordinator checks the cron expression and time zone: it is the
	// one that reads them.
	var sched queue.Schedule
	if err := call(ctx, s.nc, queue.SubjectAPIScheduleAdd, req, &sched); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(sched)
	}
	if sched.Kind == queue.KindPrune {
		fmt.Fprintf(e.stdout, "schedule %s added: prune %s at %q (%s); next run %s\n",
			sched.Name, sched.Repo, sched.Cron, sched.Timezone, nextRun(&sched))
		return nil
	}
	fmt.Fprintf(e.stdout, "schedule %s added: %s -> %s at %q (%s); next run %s\n",
		sched.Name, sched.Source, sched.Repo, sched.Cron, sched.Timezone, nextRun(&sched))
	fmt.Fprintf(e.stdout, "after each backup: %s\n", keepPhrase(sched.KeepPolicy))
	return nil
}

// keepPhrase says what a schedule's keep policy does.
func keepPhrase(k queue.KeepPolicy) string {
	if k.Empty() {
		return "keep every snapshot"
	}
	p, err := k.Policy()
	if err != nil {
		return "keep policy invalid: " + err.Error()
	}
	return p.String() + " of the source"
}

func scheduleList(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("schedule list", &c)
	s, _, err := remoteCommand(ctx, e, fs, &c, args, 0, "")
	if err != nil {
		return err
	}
	defer s.close()
	var reply queue.ScheduleListReply
	if err := call(ctx, s.nc, queue.SubjectAPIScheduleList, &queue.ScheduleListRequest{V: queue.MessageVersion}, &reply); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(reply.Schedules)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSOURCE\tCRON\tTIMEZONE\tNEXT RUN\tLAST RUN\tLAST SKIPPED")
	for _, sc := range reply.Schedules {
		what := sc.Source.String()
		if sc.Kind == queue.KindPrune {
			what = "prune " + sc.Repo
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, scheduleState(&sc), what, sc.Cron, sc.Timezone,
			nextRun(&sc), inZone(sc.LastFired, sc.Timezone), inZone(sc.LastSkipped, sc.Timezone))
	}
	return tw.Flush()
}

// scheduleNamed runs show, pause, resume or rm: one request naming a
// schedule, answered by the schedule.
func scheduleNamed(ctx context.Context, e *env, sub, subject string, args []string) error {
	var c common
	fs := newFlagSet("schedule "+sub, &c)
	s, pos, err := remoteCommand(ctx, e, fs, &c, args, 1, "one schedule NAME")
	if err != nil {
		return err
	}
	defer s.close()
	var sched queue.Schedule
	if err := call(ctx, s.nc, subject, &queue.ScheduleRequest{V: queue.MessageVersion, Name: pos[0]}, &sched); err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(sched)
	}
	switch sub {
	case "pause":
		fmt.Fprintf(e.stdout, "schedule %s paused\n", sched.Name)
	case "resume":
		fmt.Fprintf(e.stdout, "schedule %s resumed; next run %s\n", sched.Name, nextRun(&sched))
	case "rm":
		fmt.Fprintf(e.stdout, "schedule %s removed\n", sched.Name)
	default:
		showSchedule(e, &sched)
	}
	return nil
}

func showSchedule(e *env, s *queue.Schedule) {
	fmt.Fprintf(e.stdout, "schedule    %s (%s)\n", s.Name, scheduleState(s))
	if s.Kind == queue.KindPrune {
		fmt.Fprintf(e.stdout, "prunes      %s\n", s.Repo)
	} else {
		fmt.Fprintf(e.stdout, "source      %s\n", s.Source)
		fmt.Fprintf(e.stdout, "repository  %s\n", s.Repo)
	}
	fmt.Fprintf(e.stdout, "cron        %s (%s)\n", s.Cron, s.Timezone)
	if s.Kind != queue.KindPrune {
		fmt.Fprintf(e.stdout, "backup      level %s, chunk size %s\n", s.Level, config.FormatBytes(s.ChunkSize))
		printSelection(e, &s.Selection, &s.Labels)
		fmt.Fprintf(e.stdout, "retention   %s\n", keepPhrase(s.KeepPolicy))
	}
	fmt.Fprintf(e.stdout, "created     %s\n", inZone(s.Created, s.Timezone))
	if !s.Retimed.IsZero() {
		fmt.Fprintf(e.stdout, "retimed     %s (earlier windows of this timing do not fire)\n", inZone(s.Retimed, s.Timezone))
	}
	if !s.Resumed.IsZero() {
		fmt.Fprintf(e.stdout, "resumed     %s\n", inZone(s.Resumed, s.Timezone))
	}
	fmt.Fprintf(e.stdout, "next run    %s\n", nextRun(s))
	if !s.LastFired.IsZero() {
		fmt.Fprintf(e.stdout, "last run    %s, job %s\n", inZone(s.LastFired, s.Timezone), s.LastJobID)
	}
	if !s.LastSkipped.IsZero() {
		fmt.Fprintf(e.stdout, "last skip   %s: %s\n", inZone(s.LastSkipped, s.Timezone), s.LastSkipReason)
	}
	if f := s.LastForget; f != nil {
		fmt.Fprintf(e.stdout, "forgotten   %s after job %s: %s, kept %d", inZone(f.Time, s.Timezone), f.JobID, plural(f.Forgotten, "snapshot"), f.Kept)
		if f.Error != "" {
			fmt.Fprintf(e.stdout, " (stopped: %s)", f.Error)
		}
		fmt.Fprintln(e.stdout)
		for _, id := range f.Snapshots {
			fmt.Fprintf(e.stdout, "            %s\n", id)
		}
	}
}

func scheduleState(s *queue.Schedule) string {
	if s.Paused {
		return "paused"
	}
	return "active"
}

func nextRun(s *queue.Schedule) string {
	if s.Paused {
		return "none (paused)"
	}
	return inZone(s.Next, s.Timezone)
}

// inZone formats t in the schedule's time zone, which its cron expression
// is read in, or "-" for the zero time.
func inZone(t time.Time, zone string) string {
	if t.IsZero() {
		return "-"
	}
	if loc, err := time.LoadLocation(zone); err == nil {
		t = t.In(loc)
	}
	return t.Format("2006-01-02 15:04 MST")
}
