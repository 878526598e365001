// Command reader serves the data of one host to the bulkbackup fleet: it
// reads chunks of local sources for backups and writes chunks to local
// targets for restores.
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

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

type options struct {
	metricsAddr                                 string
	natsURL, host, s3Endpoint, logLevel, logFmt string
	workers                                     int
	drain                                       time.Duration
}

func flags() (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("reader", flag.ContinueOnError)
	fs.String("config", "", "YAML configuration file (keys are flag names with _ for -)")
	fs.StringVar(&o.natsURL, "nats", service.DefaultNATSURL, "URL of the NATS server or cluster")
	fs.StringVar(&o.host, "host", "", "host name this reader serves: letters, digits, - and _ (default: this machine's short host name)")
	fs.IntVar(&o.workers, "workers", 4, "chunks read or written at once")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long in-flight work may finish after SIGTERM")
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
		fmt.Fprintln(os.Stderr, "reader:", err)
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
	if o.host == "" {
		o.host = fleet.LocalHost()
	}
	nc, err := service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: o.natsURL, Name: "reader-" + o.host, Logger: logger}))
	if err != nil {
		return err
	}
	defer nc.Close()
	m := metrics.New("reader")
	rd, err := reader.New(nc, reader.Config{
		Host: o.host, Workers: o.workers, Repos: service.Repos(o.s3Endpoint), Logger: logger, DrainTimeout: o.drain, Metrics: m,
	})
	if err != nil {
		return err
	}
	return service.Run(ctx, o.metricsAddr, m, nc, logger, rd.Run)
}
