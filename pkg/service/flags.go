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
// error otherwise. The garbage collector is tuned first (TuneGC).
func Main(name string, run func(ctx context.Context, args []string) error) {
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
