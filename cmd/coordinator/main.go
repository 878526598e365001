// Command coordinator runs bulkbackup's control plane. By default it embeds a
// NATS server with JetStream listening on --listen, so one process is a
// complete control plane; with --nats it uses an external NATS (cluster).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
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
	service.Flags
	listen, data               string
	maxPayload, rawMaxBytes    config.Size
	replicas, window           int
	chunkTimeout, stallTimeout time.Duration
	readerTimeout, workerTTL   time.Duration
	tlsCert, tlsKey            string
}

func flags() (*flag.FlagSet, *options) {
	o := &options{maxPayload: broker.DefaultMaxPayload, rawMaxBytes: queue.DefaultRawMaxBytes}
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	o.Register(fs, "", "URL of an external NATS server or cluster; empty embeds one")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4222", "address of the embedded NATS server (ignored with --nats)")
	fs.StringVar(&o.data, "data", "bulk-data", "directory for the embedded server's JetStream data")
	fs.Var(&o.maxPayload, "max-payload", "largest NATS message the embedded server accepts")
	fs.Var(&o.rawMaxBytes, "raw-max-bytes", "fleet-wide bound on raw chunk bytes in flight")
	fs.IntVar(&o.replicas, "replicas", 1, "replicas of the durable streams (3 in a cluster)")
	fs.IntVar(&o.window, "window", 512, "work items of one job outstanding at once")
	fs.DurationVar(&o.chunkTimeout, "chunk-timeout", 2*time.Minute, "re-issue a work item not completed within this time")
	fs.DurationVar(&o.stallTimeout, "stall-timeout", 10*time.Minute, "fail a job that completes nothing for this long")
	fs.DurationVar(&o.readerTimeout, "reader-timeout", time.Minute, "how long a job waits for a reader of its host")
	fs.DurationVar(&o.workerTTL, "worker-ttl", queue.DefaultWorkerTTL, "how long a worker stays listed after its last heartbeat")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate file: the embedded server requires TLS of every client (which trust its issuer via BULK_NATS_CA)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	return fs, o
}

func main() { service.Main("coordinator", run) }

func run(ctx context.Context, args []string) error {
	fs, o := flags()
	logger, err := o.Parse(fs, args)
	if err != nil {
		return err
	}
	var nc *nats.Conn
	if o.NATS == "" {
		if err := os.MkdirAll(o.data, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		nopts := service.NATSFromEnv(service.ConnectOptions{})
		b, err := broker.Start(broker.Config{
			Listen: o.listen, StoreDir: o.data, MaxPayload: int32(o.maxPayload),
			User: nopts.User, Password: nopts.Password, TLSCert: o.tlsCert, TLSKey: o.tlsKey,
			ServerName: "bulk-coordinator", Logger: logger,
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
		nopts := service.NATSFromEnv(service.ConnectOptions{URL: o.NATS, Name: "coordinator", Logger: logger})
		if nc, err = service.Connect(ctx, nopts); err != nil {
			return err
		}
	}
	defer nc.Close()
	m := metrics.New("coordinator")
	coord, err := coordinator.New(nc, coordinator.Config{
		Metrics: m,
		Repos:   service.Repos(o.S3Endpoint),
		Streams: queue.StreamConfig{Replicas: o.replicas, RawMaxBytes: int64(o.rawMaxBytes), WorkerTTL: o.workerTTL},
		Window:  o.window, ChunkTimeout: o.chunkTimeout, StallTimeout: o.stallTimeout,
		ReaderTimeout: o.readerTimeout, Logger: logger,
	})
	if err != nil {
		return err
	}
	return service.Run(ctx, o.MetricsAddr, m, nc, logger, coord.Run)
}
