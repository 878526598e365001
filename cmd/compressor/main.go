// Command compressor is a bulkbackup compressor worker: it pulls raw chunks,
// compresses and stores them, and acknowledges only what is durably stored.
// Run as many as you like; SIGTERM drains in-flight chunks before exit.
package main

import (
	"context"
	"flag"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/service"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
)

type options struct {
	service.Flags
	name    string
	workers int
	drain   time.Duration
	storeTO time.Duration
	rate    config.Size
}

func flags() (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("compressor", flag.ContinueOnError)
	o.Register(fs, service.DefaultNATSURL, "URL of the NATS server or cluster")
	fs.StringVar(&o.name, "name", "", "name in logs and completions (default HOST-PID)")
	fs.IntVar(&o.workers, "workers", 0, "chunks compressed at once (default: one per CPU)")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long in-flight chunks may finish after SIGTERM")
	fs.DurationVar(&o.storeTO, "store-timeout", retry.DefaultMaxElapsed,
		"how long a chunk is retried while the repository is unreachable before it, and its job, fail")
	fs.Var(&o.rate, "rate-limit", "benchmarks only: slow each worker to this many raw bytes per second (0: no limit)")
	return fs, o
}

func main() { service.Main("compressor", run) }

func run(ctx context.Context, args []string) error {
	fs, o := flags()
	logger, err := o.Parse(fs, args)
	if err != nil {
		return err
	}
	keys, err := service.WriteKeysFromEnv()
	if err != nil {
		return err
	}
	nc, err := service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: o.NATS, Name: "compressor", Logger: logger}))
	if err != nil {
		return err
	}
	defer nc.Close()
	m := metrics.New(metrics.RoleCompressor)
	comp, err := compressor.New(nc, compressor.Config{
		Name: o.name, Workers: o.workers, Repos: service.Repos(o.S3Endpoint, o.storeTO, keys, logger), Logger: logger, DrainTimeout: o.drain, Metrics: m,
		RateLimit: int64(o.rate),
	})
	if err != nil {
		return err
	}
	return service.Run(ctx, o.MetricsAddr, m, nc, logger, comp.Run)
}
