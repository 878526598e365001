// Command reader serves the data of one host to the bulkbackup fleet: it
// reads chunks of local sources for backups and writes chunks to local
// targets for restores.
package main

import (
	"context"
	"flag"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

type options struct {
	service.Flags
	host    string
	workers int
	drain   time.Duration
}

func flags() (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("reader", flag.ContinueOnError)
	o.Register(fs, service.DefaultNATSURL, "URL of the NATS server or cluster")
	fs.StringVar(&o.host, "host", "", "host name this reader serves: letters, digits, - and _ (default: this machine's short host name)")
	fs.IntVar(&o.workers, "workers", reader.DefaultWorkers, "chunks read or written at once")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long in-flight work may finish after SIGTERM")
	return fs, o
}

func main() { service.Main("reader", run) }

func run(ctx context.Context, args []string) error {
	fs, o := flags()
	logger, err := o.Parse(fs, args)
	if err != nil {
		return err
	}
	if o.host == "" {
		o.host = fleet.LocalHost()
	}
	nc, err := service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: o.NATS, Name: "reader-" + o.host, Logger: logger}))
	if err != nil {
		return err
	}
	defer nc.Close()
	m := metrics.New("reader")
	rd, err := reader.New(nc, reader.Config{
		Host: o.host, Workers: o.workers, Repos: service.Repos(o.S3Endpoint), Logger: logger, DrainTimeout: o.drain, Metrics: m,
	})
	if err != nil {
		return err
	}
	return service.Run(ctx, o.MetricsAddr, m, nc, logger, rd.Run)
}
