package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/service"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// common holds the flags every command shares.
type common struct {
	repo, natsURL, s3Endpoint, logLevel string
	logFile                             string
	json                                bool
	compressors                         int
	maxHeld, maxPayload                 config.Size
	dataPlane                           string
	storeTimeout                        time.Duration
}

// newFlagSet returns a command's flag set with the shared flags, so one
// configuration file (configs/bulkctl.yaml) serves every command.
func newFlagSet(name string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet("bulkctl "+name, flag.ContinueOnError)
	fs.String("config", "", "YAML configuration file (keys are flag names with _ for -)")
	fs.StringVar(&c.repo, "repo", "", "repository: DIR, file://DIR or s3://BUCKET/PREFIX (also -r)")
	fs.StringVar(&c.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (default from AWS_ENDPOINT_URL)")
	fs.BoolVar(&c.json, "json", false, "print the result as JSON")
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level of the in-process fleet (its log goes to --log-file): debug, info, warn or error")
	fs.StringVar(&c.logFile, "log-file", "", "where the in-process fleet logs: a file (appended to), or - for stderr; "+
		"by default a temporary file, kept and named only when the command fails")
	fs.StringVar(&c.natsURL, "nats", "", "URL of a running coordinator's NATS; empty runs the fleet in this process")
	fs.IntVar(&c.compressors, "compressors", 0, "compressor workers of the in-process fleet (default: one per CPU)")
	fs.StringVar(&c.dataPlane, "data-plane", string(fleet.DataLocal), "in-process fleet: how raw chunks reach the compressors: "+
		"local (in memory), or as across machines: http (fetched from the reader's data server) or nats (fetched through the NATS server)")
	// One process needs only a few chunks held per compressor; more only
	// grows memory (docs/benchmarks.md measures this).
	c.maxHeld = 64 << 20
	fs.Var(&c.maxHeld, "max-held", "in-process fleet with --data-plane http or nats: raw chunk bytes the reader holds for the compressors at most")
	c.maxPayload = broker.DefaultMaxPayload
	fs.Var(&c.maxPayload, "max-payload", "largest NATS message of the in-process fleet; with --data-plane nats larger chunks are fetched in parts")
	fs.DurationVar(&c.storeTimeout, "store-timeout", retry.DefaultMaxElapsed,
		"in-process fleet: how long a chunk is retried while the repository is unreachable before it, and the backup, fail")
	return fs
}

// session is where jobs go: a fleet in this process, or a remote
// coordinator.
type session struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	fleet  *fleet.Fleet
	tmpDir *fleetDir
	host   string // the in-process reader's host
	// log is the in-process fleet's log file; logTemp says it is the
	// default one in tmpDir, kept only if the command fails.
	log     *os.File
	logTemp bool
}

// fleetLogName is the in-process fleet's log in its temporary directory.
const fleetLogName = "fleet.log"

// openSession connects to the coordinator at c.natsURL, or starts the
// fleet in this process. The in-process fleet's services do not log to
// the terminal: what a user needs of a job comes as its events (progress,
// warnings, the one-line error it fails with), as it does from a remote
// fleet, whose logs are never on the user's terminal either; service log
// lines would only repeat that in a daemon's words and break the progress
// bar. They go to --log-file, by default a file that finish keeps, and
// names in the error, when the command fails.
func openSession(ctx context.Context, c *common, stderr io.Writer, acc *access) (*session, error) {
	if _, err := service.NewLogger(io.Discard, c.logLevel, "text"); err != nil {
		return nil, usageError("--log-level: %v", err)
	}
	s := &session{}
	if c.natsURL != "" {
		logger, _ := service.NewLogger(stderr, c.logLevel, "text") // bulkctl's own connection
		var err error
		s.nc, err = service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: c.natsURL, Name: "bulkctl", Logger: logger}))
		if err != nil {
			return nil, err
		}
	} else if err := s.startFleet(ctx, c, stderr, acc); err != nil {
		return nil, s.finish(err)
	}
	var err error
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, s.finish(err)
	}
	return s, nil
}

// startFleet starts the in-process fleet, logging to c.logFile.
func (s *session) startFleet(ctx context.Context, c *common, stderr io.Writer, acc *access) error {
	var err error
	if s.tmpDir, err = newFleetDir(); err != nil {
		return err
	}
	logTo := stderr
	switch c.logFile {
	case "-":
	case "":
		s.log, err = os.OpenFile(filepath.Join(s.tmpDir.path, fleetLogName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		s.logTemp = true
	default:
		s.log, err = os.OpenFile(c.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	}
	if err != nil {
		return fmt.Errorf("--log-file: %w", err)
	}
	if s.log != nil {
		logTo = s.log
	}
	logger, err := service.NewLogger(logTo, c.logLevel, "text")
	if err != nil {
		return err
	}
	plane, err := fleet.ParseDataPlane(c.dataPlane)
	if err != nil {
		return usageError("--data-plane: %v", err)
	}
	if acc == nil {
		acc = &access{}
	}
	s.fleet, err = fleet.Start(ctx, fleet.Config{
		Dir: s.tmpDir.path, Compressors: c.compressors, MaxHeld: int64(c.maxHeld), MaxPayload: int32(c.maxPayload), DataPlane: plane,
		Repos: service.Repos(c.s3Endpoint, 0, acc.coordinator, logger), WorkerRepos: service.Repos(c.s3Endpoint, c.storeTimeout, acc.workers, logger),
		Logger: logger,
	})
	if err != nil {
		return err
	}
	s.host = s.fleet.Host()
	s.nc, err = s.fleet.Connect("bulkctl")
	return err
}

// close ends the session.
func (s *session) close() { _ = s.finish(nil) }

// finish ends the session after a command that returned err, and returns
// err: when the command failed and the in-process fleet logged something
// to its default log file, the log is kept (moved out of the fleet's
// directory, which goes) and err names it.
func (s *session) finish(err error) error {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.fleet != nil {
		s.fleet.Close()
	}
	if s.log != nil {
		s.log.Close()
		if s.logTemp && failed(err) {
			err = s.keepLog(err)
		}
	}
	if s.tmpDir != nil {
		s.tmpDir.remove()
	}
	return err
}

// failed reports whether err is a failure (exit status 1), not success,
// completion with warnings or a usage error.
func failed(err error) bool {
	var ec *exitCodeError
	return err != nil && (!errors.As(err, &ec) || ec.code == exitError)
}

// keptLogDir is where failed commands' fleet logs are kept (tests point
// it elsewhere).
var keptLogDir = os.TempDir

// keepLog moves a non-empty fleet log out of the fleet's directory into
// the temporary directory and adds its path to err.
func (s *session) keepLog(err error) error {
	src := filepath.Join(s.tmpDir.path, fleetLogName)
	if fi, serr := os.Stat(src); serr != nil || fi.Size() == 0 {
		return err
	}
	dst, cerr := os.CreateTemp(keptLogDir(), "bulkctl-"+time.Now().Format("20060102-150405")+"-*.log")
	if cerr != nil {
		return err
	}
	dst.Close()
	if os.Rename(src, dst.Name()) != nil {
		os.Remove(dst.Name())
		return err
	}
	note := func(e error) error { return fmt.Errorf("%w (the in-process fleet's log: %s)", e, dst.Name()) }
	var ec *exitCodeError
	if errors.As(err, &ec) {
		ec.err = note(ec.err) // run prints ec.err
		return err
	}
	return note(err)
}

// endpoint turns a SOURCE or TARGET argument into HOST:PATH: given as such
// to a remote coordinator, or a local path for the in-process fleet.
func (s *session) endpoint(arg string) (queue.Endpoint, error) {
	if s.fleet == nil {
		e, err := queue.ParseEndpoint(arg)
		if err != nil {
			return e, usageError("with --nats, name sources and targets as HOST:PATH: %v", err)
		}
		return e, nil
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return queue.Endpoint{}, err
	}
	return queue.Endpoint{Host: s.host, Path: abs}, nil
}

// repoArg makes a directory repository absolute: the services resolve it,
// not this shell.
func repoArg(repo string) (string, error) {
	if repo == "" {
		return "", usageError("no repository given (use -r REPO or BULK_REPO)")
	}
	if strings.Contains(repo, "://") {
		return repo, nil
	}
	return filepath.Abs(repo)
}

// run submits a request and follows the job to its end, showing progress on
// stderr (with json only on a terminal). Interrupting cancels the job.
func (s *session) run(ctx context.Context, subject string, req any, jobID string, stderr io.Writer, json bool) (*queue.Event, error) {
	if err := queue.Submit(ctx, s.js, subject, req, jobID); err != nil {
		return nil, err
	}
	p := newProgress(stderr, json)
	ev, err := queue.Follow(ctx, s.js, jobID, p.update)
	p.finish()
	if err != nil && ctx.Err() != nil {
		cancelCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = queue.Submit(cancelCtx, s.js, queue.SubjectRequestCancel, &queue.CancelRequest{V: queue.MessageVersion, JobID: jobID}, "cancel-"+jobID)
		if s.fleet != nil { // wait for the in-process job to wind down
			_, _ = queue.Follow(cancelCtx, s.js, jobID, nil)
		}
		return nil, fmt.Errorf("interrupted; job %s cancelled", jobID)
	}
	return ev, err
}

func newJobID() string { return uuid.NewString() }

// s3Options returns the S3 settings of the environment, with
// --s3-endpoint.
func s3Options(c *common) storeurl.S3Options {
	s3 := storeurl.S3FromEnv()
	if c.s3Endpoint != "" {
		s3.Endpoint = c.s3Endpoint
	}
	return s3
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
