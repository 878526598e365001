// Command coordinator runs bulkbackup's control plane. By default it embeds a
// NATS server with JetStream listening on --listen, so one process is a
// complete control plane; with --nats it uses an external NATS (cluster).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/dashboard"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/service"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

type options struct {
	service.Flags
	listen, data               string
	maxPayload                 config.Size
	replicas, window           int
	chunkTimeout, stallTimeout time.Duration
	readerTimeout, workerTTL   time.Duration
	tlsCert, tlsKey            string
	dashboardAddr              string
	dashboardCredentials       string
	dashboardPublicRead        bool
}

func flags() (*flag.FlagSet, *options) {
	o := &options{maxPayload: broker.DefaultMaxPayload}
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	o.Register(fs, "", "URL of an external NATS server or cluster; empty embeds one")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4222", "address of the embedded NATS server (ignored with --nats)")
	fs.StringVar(&o.data, "data", "bulk-data", "directory for the embedded server's JetStream data")
	fs.Var(&o.maxPayload, "max-payload", "largest NATS message the embedded server accepts")
	fs.IntVar(&o.replicas, "replicas", 1, "replicas of the durable streams (3 in a cluster)")
	fs.IntVar(&o.window, "window", coordinator.DefaultWindow, "work items of one job outstanding at once")
	fs.DurationVar(&o.chunkTimeout, "chunk-timeout", coordinator.DefaultChunkTimeout, "re-issue a work item not completed within this time")
	fs.DurationVar(&o.stallTimeout, "stall-timeout", coordinator.DefaultStallTimeout, "fail a job that completes nothing for this long")
	fs.DurationVar(&o.readerTimeout, "reader-timeout", coordinator.DefaultReaderTimeout, "how long a job waits for a reader of its host")
	fs.DurationVar(&o.workerTTL, "worker-ttl", queue.DefaultWorkerTTL, "how long a worker stays listed after its last heartbeat")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate file: the embedded server requires TLS of every client (which trust its issuer via BULK_NATS_CA)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.StringVar(&o.dashboardAddr, "dashboard-addr", "",
		"serve the web dashboard on this address (e.g. 127.0.0.1:8080); empty disables. Log in with "+
			dashboard.EnvToken+", or "+dashboard.EnvUser+" and "+dashboard.EnvPassword+", or --dashboard-credentials")
	fs.StringVar(&o.dashboardCredentials, "dashboard-credentials", "",
		"YAML file with the dashboard's login (token, or user and password) instead of the environment")
	fs.BoolVar(&o.dashboardPublicRead, "dashboard-public-read", false,
		"let anyone who reaches --dashboard-addr view the dashboard without logging in (actions still need a login)")
	return fs, o
}

func main() { service.Main("coordinator", run) }

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
	m := metrics.New(metrics.RoleCoordinator)
	repos := service.Repos(o.S3Endpoint, 0, keys, logger)
	coord, err := coordinator.New(nc, coordinator.Config{
		Metrics: m,
		Repos:   repos,
		Streams: queue.StreamConfig{Replicas: o.replicas, WorkerTTL: o.workerTTL},
		Window:  o.window, ChunkTimeout: o.chunkTimeout, StallTimeout: o.stallTimeout,
		ReaderTimeout: o.readerTimeout, Logger: logger,
	})
	if err != nil {
		return err
	}
	serve := coord.Run
	if o.dashboardAddr != "" {
		dash, err := startDashboard(o, nc, repos, logger)
		if err != nil {
			return err
		}
		serve = func(ctx context.Context) error { return service.Together(ctx, coord.Run, dash) }
	}
	// Ready once its streams, buckets and API are set up, not as soon as
	// it is connected.
	return service.Run(ctx, o.MetricsAddr, m, nc, logger, serve, coord.Ready)
}

// startDashboard sets up the web dashboard as the flags ask and listens on
// its address, so that a bad address or login fails the start; it returns
// the function that serves it.
func startDashboard(o *options, nc *nats.Conn, repos *repository.Cache, logger *slog.Logger) (func(context.Context) error, error) {
	creds, err := dashboard.LoadCredentials(o.dashboardCredentials, os.Getenv, func(msg string) { logger.Warn(msg) })
	if err != nil {
		return nil, err
	}
	s3 := storeurl.S3FromEnv()
	natsOpts := service.NATSFromEnv(service.ConnectOptions{})
	d, err := dashboard.New(nc, dashboard.Config{
		Credentials: creds, PublicRead: o.dashboardPublicRead, Repos: repos, Logger: logger,
		Redact: []string{s3.SecretKey, s3.SessionToken, natsOpts.Password},
	})
	if err != nil {
		return nil, err
	}
	if !creds.Enabled() {
		logger.Warn("the dashboard has no login: it shows the fleet to anyone who reaches it, and nobody can act on it")
	}
	ln, err := net.Listen("tcp", o.dashboardAddr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen %s: %w", o.dashboardAddr, err)
	}
	return func(ctx context.Context) error { return d.Serve(ctx, ln) }, nil
}
