// Command bulkctl is bulkbackup's command line. Without --nats it runs the
// whole fleet (coordinator, reader, compressors on an embedded NATS server)
// in this process; with --nats URL it submits jobs to a running coordinator
// and follows them to the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/bulkbackup/bulkbackup/pkg/service"
	"github.com/bulkbackup/bulkbackup/pkg/version"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitWarnings: the job completed, but some files were not backed up
	// or restored as they are (listed on stderr), for example the files of
	// a damaged chunk left out of a tree restore.
	exitWarnings = 3
)

const usage = `bulkctl: high-speed bulk backup through a worker fleet

Usage:
  bulkctl init -r REPO [--recipient age1…]... [--plaintext]
  bulkctl key list|add|remove|passwd|write-key -r REPO
  bulkctl backup SOURCE -r REPO [--mode auto|volume|files] [--json] [--chunk-size 4MiB] [--level fastest]
                [--exclude PATTERN]... [--exclude-file FILE]... [--exclude-caches] [--exclude-larger-than SIZE]
                [--one-file-system] [--tag TAG]... [--host NAME]
  bulkctl restore SNAPSHOT TARGET... -r REPO [--path SUB/PATH]... [--overwrite] [--tag TAG] [--host H] [--source-path P]
  bulkctl verify SNAPSHOT -r REPO [--compare SOURCE]
  bulkctl snapshots -r REPO [--json] [--tag TAG]... [--host HOST]... [--path PATH]...
  bulkctl ls SNAPSHOT [PATH] -r REPO [--json]
  bulkctl diff SNAPSHOT1 SNAPSHOT2 -r REPO [--json]
  bulkctl find PATTERN... -r REPO [--tag TAG]... [--host HOST]... [--path PATH]... [--json]
  bulkctl forget [SNAPSHOT...] -r REPO [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N]
                 [--keep-yearly N] [--keep-hourly N] [--keep-within 1y6m] [--tag T]... [--host H]... [--path P]...
                 [--dry-run] [--json]
  bulkctl prune -r REPO [--dry-run] [--json]
  bulkctl check -r REPO [--read-data | --read-data-subset 10%] [--json]

With a running coordinator (--nats URL or BULK_NATS):
  bulkctl jobs [--state running] [--limit 20] [--json]
  bulkctl job JOB_ID [--watch] [--json]
  bulkctl cancel JOB_ID
  bulkctl history HOST:PATH [--json]
  bulkctl workers [--json]
  bulkctl schedule add NAME --source HOST:PATH -r REPO --cron "0 2 * * *" [--timezone Europe/Berlin]
                        [--level fastest] [--chunk-size 4MiB] [--keep-last N] [--keep-daily N] ... [--json]
  bulkctl schedule add NAME --prune -r REPO --cron "0 4 * * 0"
  bulkctl schedule set NAME [--cron "30 3 * * *"] [--timezone Z] [-r REPO] [--level L] [--chunk-size S] [--keep-last N] [--json]
  bulkctl schedule list|show NAME|pause NAME|resume NAME|rm NAME [--json]

REPO is a directory, file://PATH or s3://BUCKET/PREFIX (S3 endpoint and keys
from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); BULK_REPO
sets it; bulkctl init creates it, encrypted unless --plaintext. SNAPSHOT is
an ID, a unique ID prefix, or "latest".

An encrypted repository opens with its password, in a file named by
BULK_PASSWORD_FILE (or in BULK_PASSWORD, or typed on a terminal), or its
age identity, in a file named by BULK_IDENTITY_FILE. A backup may use a
write key instead (BULK_WRITE_KEY_FILE), which cannot read backups.

SOURCE is a volume (an image file or block device) or a directory. In auto
mode a directory is backed up file by file, unless it holds more than
--files-threshold files and is the root of a mounted filesystem whose device
can be read: then the device is backed up as a volume.

Exit status: 0 done, 1 failed (check: damage found), 2 bad usage, 3 done
with warnings (files that could not be read, changed while read, skipped,
or, restoring, in a damaged chunk; listed).

Without --nats the fleet runs in this process. With --nats URL (or
BULK_NATS) the job goes to a running coordinator and SOURCE and TARGET are
HOST:PATH, naming the reader that holds the data.

Run "bulkctl help COMMAND" (or "bulkctl COMMAND --help") for a command's
flags, "bulkctl --version" for the version.
`

// command is one subcommand.
type command struct {
	run func(ctx context.Context, env *env, args []string) error
}

var commands = map[string]command{
	"init":      {run: runInit},
	"key":       {run: runKey},
	"backup":    {run: runBackup},
	"restore":   {run: runRestore},
	"verify":    {run: runVerify},
	"snapshots": {run: runSnapshots},
	"ls":        {run: runLs},
	"jobs":      {run: runJobs},
	"job":       {run: runJob},
	"cancel":    {run: runCancel},
	"history":   {run: runHistory},
	"workers":   {run: runWorkers},
	"schedule":  {run: runSchedule},
	"forget":    {run: runForget},
	"prune":     {run: runPrune},
	"check":     {run: runCheck},
}

// env is what a command writes to.
type env struct {
	stdout, stderr io.Writer
}

// exitError carries a specific exit status.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func main() {
	service.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command line and returns the exit status. It follows the Go
// tools: help asked for goes to stdout and exits 0; a usage error is one
// line naming it and one pointing to the help, on stderr, exit 2.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if args[0] == "help" && len(args) > 1 {
			if _, ok := commands[args[1]]; !ok {
				fmt.Fprintf(stderr, "bulkctl help: unknown command %q; run 'bulkctl help'\n", args[1])
				return exitUsage
			}
			// The command's own help: "help schedule add" is "schedule add --help".
			return run(ctx, append(slices.Clone(args[1:]), "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version.String("bulkctl"))
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		if strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "bulkctl: flag %s before the command; flags follow it (bulkctl COMMAND [flags]); run 'bulkctl help'\n", args[0])
		} else {
			fmt.Fprintf(stderr, "bulkctl: unknown command %q; run 'bulkctl help'\n", args[0])
		}
		return exitUsage
	}
	err := cmd.run(ctx, &env{stdout: stdout, stderr: stderr}, aliasFlags(args[1:]))
	code := exitError
	var ec *exitCodeError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp): // the help was printed to stdout
		return exitOK
	case errors.As(err, &ec):
		code, err = ec.code, ec.err
	}
	// One line per failure: a message that spans lines (errors joined
	// on the way) is folded into one.
	fmt.Fprintf(stderr, "bulkctl %s: %s\n", args[0], strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
	if code == exitUsage {
		fmt.Fprintf(stderr, "run 'bulkctl help %s' for usage\n", args[0])
	}
	return code
}

// aliasFlags rewrites the short flag -r to --repo, so the one flag has one
// name for the environment (BULK_REPO) and the config file (repo).
func aliasFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "--":
			copy(out[i:], args[i:])
			return out
		case a == "-r" || a == "--r":
			a = "--repo"
		case strings.HasPrefix(a, "-r=") || strings.HasPrefix(a, "--r="):
			a = "--repo=" + a[strings.Index(a, "=")+1:]
		}
		out[i] = a
	}
	return out
}

func usageError(format string, args ...any) error {
	return &exitCodeError{code: exitUsage, err: fmt.Errorf(format, args...)}
}
