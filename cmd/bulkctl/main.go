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
	"strings"
	"syscall"

	"github.com/bulkbackup/bulkbackup/pkg/service"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitWarnings: the job completed, but some files were not backed up
	// or restored as they are (listed on stderr).
	exitWarnings = 3
)

const usage = `bulkctl: high-speed bulk backup through a worker fleet

Usage:
  bulkctl backup SOURCE -r REPO [--mode auto|volume|files] [--json] [--chunk-size 4MiB] [--level fastest]
  bulkctl restore SNAPSHOT TARGET... -r REPO [--path SUB/PATH]... [--overwrite]
  bulkctl verify SNAPSHOT -r REPO [--compare SOURCE]
  bulkctl snapshots -r REPO [--json]
  bulkctl ls SNAPSHOT [PATH] -r REPO [--json]

With a running coordinator (--nats URL or BULK_NATS):
  bulkctl jobs [--state running] [--limit 20] [--json]
  bulkctl job JOB_ID [--watch] [--json]
  bulkctl cancel JOB_ID
  bulkctl history HOST:PATH [--json]
  bulkctl workers [--json]
  bulkctl schedule add NAME --source HOST:PATH -r REPO --cron "0 2 * * *" [--timezone Europe/Berlin]
                        [--level fastest] [--chunk-size 4MiB] [--keep-last N] [--json]
  bulkctl schedule list|show NAME|pause NAME|resume NAME|rm NAME [--json]

REPO is a directory, file://PATH or s3://BUCKET/PREFIX (S3 endpoint and keys
from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); BULK_REPO
sets it. SNAPSHOT is an ID, a unique ID prefix, or "latest".

SOURCE is a volume (an image file or block device) or a directory. In auto
mode a directory is backed up file by file, unless it holds more than
--files-threshold files and is the root of a mounted filesystem whose device
can be read: then the device is backed up as a volume.

Exit status: 0 done, 1 failed, 2 bad usage, 3 done with warnings (files
that could not be read, changed while read, or were skipped; listed).

Without --nats the fleet runs in this process. With --nats URL (or
BULK_NATS) the job goes to a running coordinator and SOURCE and TARGET are
HOST:PATH, naming the reader that holds the data.

Run "bulkctl COMMAND -h" for a command's flags.
`

// command is one subcommand.
type command struct {
	run func(ctx context.Context, env *env, args []string) error
}

var commands = map[string]command{
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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "bulkctl: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	err := cmd.run(ctx, &env{stdout: stdout, stderr: stderr}, aliasFlags(args[1:]))
	var ec *exitCodeError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitUsage
	case errors.As(err, &ec):
		fmt.Fprintf(stderr, "bulkctl %s: %v\n", args[0], ec.err)
		return ec.code
	default:
		fmt.Fprintf(stderr, "bulkctl %s: %v\n", args[0], err)
		return exitError
	}
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
