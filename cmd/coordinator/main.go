// Command coordinator runs bulkbackup's control plane. By default it embeds a
// NATS server with JetStream listening on --listen, so one process is a
// complete control plane; with --nats it uses an external NATS (cluster).
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

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

type options struct {
	listen, natsURL, data        string
	maxPayload, rawMaxBytes      config.Size
	replicas, window             int
	chunkTimeout, stallTimeout   time.Duration
	readerTimeout                time.Duration
	s3Endpoint, logLevel, logFmt string
	metricsAddr                  string
}

func flags() (*flag.FlagSet, *options) {
	o := &options{maxPayload: broker.DefaultMaxPayload, rawMaxBytes: queue.DefaultRawMaxBytes}
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.String("config", "", "YAML configuration file (keys are flag names with _ for -)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4222", "address of the embedded NATS server (ignored with --nats)")
	fs.StringVar(&o.natsURL, "nats", "", "URL of an external NATS server or cluster; empty embeds one")
	fs.StringVar(&o.data, "data", "bulk-data", "directory for the embedded server's JetStream data")
	fs.Var(&o.maxPayload, "max-payload", "largest NATS message the embedded server accepts")
	fs.Var(&o.rawMaxBytes, "raw-max-bytes", "fleet-wide bound on raw chunk bytes in flight")
	fs.IntVar(&o.replicas, "replicas", 1, "replicas of the durable streams (3 in a cluster)")
	fs.IntVar(&o.window, "window", 512, "work items of one job outstanding at once")
	fs.DurationVar(&o.chunkTimeout, "chunk-timeout", 2*time.Minute, "re-issue a work item not completed within this time")
	fs.DurationVar(&o.stallTimeout, "stall-timeout", 10*time.Minute, "fail a job that completes nothing for this long")
	fs.DurationVar(&o.readerTimeout, "reader-timeout", time.Minute, "how long a job waits for a reader of its host")
	fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (default from AWS_ENDPOINT_URL)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (e.g. :9090); empty disables")
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
		fmt.Fprintln(os.Stderr, "coordinator:", err)
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
	var nc *nats.Conn
	if o.natsURL == "" {
		if err := os.MkdirAll(o.data, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		nopts := service.NATSFromEnv(service.ConnectOptions{})
		b, err := broker.Start(broker.Config{
			Listen: o.listen, StoreDir: o.data, MaxPayload: int32(o.maxPayload),
			User: nopts.User, Password: nopts.Password, ServerName: "bulk-coordinator", Logger: logger,
		})
		if err != nil {
			return err
		}
		defer b.Shutdown()
		logger.Info("embedded NATS server listening", "url", b.ClientURL(), "data", o.data)
		if nc, err = b.Connect("coordinator"); err != nil {
			return err
		}
	} else {
		nopts := service.NATSFromEnv(service.ConnectOptions{URL: o.natsURL, Name: "coordinator", Logger: logger})
		if nc, err = service.Connect(ctx, nopts); err != nil {
			return err
		}
	}
	defer nc.Close()
	m := metrics.New("coordinator")
	coord, err := coordinator.New(nc, coordinator.Config{
		Metrics: m,
		Repos:   service.Repos(o.s3Endpoint),
		Streams: queue.StreamConfig{Replicas: o.replicas, RawMaxBytes: int64(o.rawMaxBytes)},
		Window:  o.window, ChunkTimeout: o.chunkTimeout, StallTimeout: o.stallTimeout,
		ReaderTimeout: o.readerTimeout, Logger: logger,
	})
	if err != nil {
		return err
	}
	return service.Run(ctx, o.metricsAddr, m, nc, logger, coord.Run)
}
