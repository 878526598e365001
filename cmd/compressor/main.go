// Command compressor is a bulkbackup compressor worker: it pulls raw chunks,
// compresses and stores them, and acknowledges only what is durably stored.
// Run as many as you like; SIGTERM drains in-flight chunks before exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

type options struct {
	metricsAddr                                 string
	natsURL, name, s3Endpoint, logLevel, logFmt string
	workers                                     int
	drain                                       time.Duration
}

func flags() (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("compressor", flag.ContinueOnError)
	fs.String("config", "", "YAML configuration file (keys are flag names with _ for -)")
	fs.StringVar(&o.natsURL, "nats", service.DefaultNATSURL, "URL of the NATS server or cluster")
	fs.StringVar(&o.name, "name", "", "name in logs and completions (default HOST-PID)")
	fs.IntVar(&o.workers, "workers", 0, "chunks compressed at once (default: one per CPU)")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long in-flight chunks may finish after SIGTERM")
	fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (default from AWS_ENDPOINT_URL)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (e.g. :9091); empty disables")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFmt, "log-format", "", "json or text (default: text on a terminal)")
	return fs, o
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "compressor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs, o := flags()
	if _, err := config.Parse(fs, args, config.Options{}); err != nil {
		return err
	}
	logger, err := service.NewLogger(os.Stderr, o.logLevel, o.logFmt)
	if err != nil {
		return err
	}
	nc, err := service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: o.natsURL, Name: "compressor", Logger: logger}))
	if err != nil {
		return err
	}
	defer nc.Close()
	m := metrics.New("compressor")
	comp, err := compressor.New(nc, compressor.Config{
		Name: o.name, Workers: o.workers, Repos: service.Repos(o.s3Endpoint), Logger: logger, DrainTimeout: o.drain, Metrics: m,
	})
	if err != nil {
		return err
	}
	return service.Run(ctx, o.metricsAddr, m, nc, logger, comp.Run)
}
