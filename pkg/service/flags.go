package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/version"
)

// Flags are the options every service binary shares.
type Flags struct {
	NATS, S3Endpoint, MetricsAddr, LogLevel, LogFormat string
}

// Register adds the shared flags to fs; natsDefault and natsUsage describe
// --nats, which differs between the coordinator and the workers.
func (f *Flags) Register(fs *flag.FlagSet, natsDefault, natsUsage string) {
	fs.String(config.DefaultConfigFlag, "", "YAML configuration file (keys are flag names with _ for -)")
	fs.StringVar(&f.NATS, "nats", natsDefault, natsUsage)
	fs.StringVar(&f.S3Endpoint, "s3-endpoint", "", "S3 endpoint URL (default from AWS_ENDPOINT_URL)")
	fs.StringVar(&f.MetricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (e.g. :9090); empty disables")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.LogFormat, "log-format", "", "json or text (default: text on a terminal)")
	// --version is answered by Main before any parsing: as a flag it
	// would also be read from BULK_VERSION and the YAML file.
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "  -version\n    \tprint the version and exit\n")
	}
}

// Parse parses args into fs with the configuration layering (flags >
// BULK_* env > YAML file) and returns the logger the flags ask for.
func (f *Flags) Parse(fs *flag.FlagSet, args []string) (*slog.Logger, error) {
	if _, err := config.Parse(fs, args, config.Options{}); err != nil {
		return nil, err
	}
	return NewLogger(os.Stderr, f.LogLevel, f.LogFormat)
}

// Main runs a service binary: run gets the arguments and a context that
// SIGINT or SIGTERM cancels (the service then drains and returns). The
// process exits 0 on success, 2 after -h, and 1 with one line naming the
// error otherwise. Given --version it prints the version (pkg/version)
// and exits 0 without running. The garbage collector is tuned first
// (TuneGC).
func Main(name string, run func(ctx context.Context, args []string) error) {
	if VersionRequested(os.Args[1:]) {
		fmt.Println(version.String(name))
		return
	}
	TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// VersionRequested reports whether args, a service's command line, ask for
// the version: -version or --version before any "--".
func VersionRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-version", "--version", "-version=true", "--version=true":
			return true
		}
	}
	return false
}
