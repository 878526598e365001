package main

import (
	"context"
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
	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

// common holds the flags every command shares.
type common struct {
	repo, natsURL, s3Endpoint, logLevel string
	json                                bool
	compressors                         int
	rawMaxBytes, maxPayload             config.Size
	rawViaNATS                          bool
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
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level of the in-process fleet: debug, info, warn or error")
	// One process needs only a few chunks in flight per compressor; more
	// only grows memory (docs/benchmarks.md measures this).
	c.rawMaxBytes = 64 << 20
	fs.StringVar(&c.natsURL, "nats", "", "URL of a running coordinator's NATS; empty runs the fleet in this process")
	fs.IntVar(&c.compressors, "compressors", 0, "compressor workers of the in-process fleet (default: one per CPU)")
	fs.BoolVar(&c.rawViaNATS, "raw-via-nats", false, "in-process fleet: send raw chunks through the NATS raw queue, as separate processes do, instead of handing them over in memory")
	fs.Var(&c.rawMaxBytes, "raw-max-bytes", "raw chunk bytes in flight in the in-process fleet's raw queue (with --raw-via-nats)")
	c.maxPayload = broker.DefaultMaxPayload
	fs.Var(&c.maxPayload, "max-payload", "largest NATS message of the in-process fleet; with --raw-via-nats larger chunks are staged in the repository")
	fs.DurationVar(&c.storeTimeout, "store-timeout", compressor.DefaultStoreTimeout,
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
}

func openSession(ctx context.Context, c *common, stderr io.Writer) (*session, error) {
	logger, err := service.NewLogger(stderr, c.logLevel, "text")
	if err != nil {
		return nil, usageError("%v", err)
	}
	s := &session{}
	if c.natsURL != "" {
		s.nc, err = service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: c.natsURL, Name: "bulkctl", Logger: logger}))
		if err != nil {
			return nil, err
		}
	} else {
		if s.tmpDir, err = newFleetDir(); err != nil {
			return nil, err
		}
		s.fleet, err = fleet.Start(ctx, fleet.Config{
			Dir: s.tmpDir.path, Compressors: c.compressors, RawMaxBytes: int64(c.rawMaxBytes), MaxPayload: int32(c.maxPayload), RawViaNATS: c.rawViaNATS,
			StoreTimeout: c.storeTimeout, Repos: service.Repos(c.s3Endpoint), Logger: logger,
		})
		if err != nil {
			s.close()
			return nil, err
		}
		s.host = s.fleet.Host()
		if s.nc, err = s.fleet.Connect("bulkctl"); err != nil {
			s.close()
			return nil, err
		}
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.fleet != nil {
		s.fleet.Close()
	}
	if s.tmpDir != nil {
		s.tmpDir.remove()
	}
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
// stderr. Interrupting cancels the job.
func (s *session) run(ctx context.Context, subject string, req any, jobID string, stderr io.Writer) (*queue.Event, error) {
	if err := queue.Submit(ctx, s.js, subject, req, jobID); err != nil {
		return nil, err
	}
	p := newProgress(stderr)
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

// openRepo opens an existing repository directly (verify, snapshots).
func openRepo(ctx context.Context, c *common) (*repository.Repository, error) {
	repo, err := repoArg(c.repo)
	if err != nil {
		return nil, err
	}
	return service.Repos(c.s3Endpoint).Get(ctx, repo, false)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
