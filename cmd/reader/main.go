// Command reader serves the data of one host to the bulkbackup fleet: it
// reads chunks of local sources for backups, compresses and stores what its
// own workers have room for, and holds the rest for the fleet's compressors
// to fetch; for restores it writes chunks to local targets.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/pkg/compressor"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/service"
	"github.com/bulkbackup/bulkbackup/pkg/store/retry"
)

// dataAddrAuto makes the data server listen on the address this host
// reaches the NATS server from, on any free port.
const dataAddrAuto = "auto"

type options struct {
	service.Flags
	host                string
	workers             int
	compress            countFlag
	maxHeld             config.Size
	dataAddr, advertise string
	drain, storeTimeout time.Duration
}

func flags() (*flag.FlagSet, *options) {
	o := &options{maxHeld: reader.DefaultMaxHeld, compress: countAuto}
	fs := flag.NewFlagSet("reader", flag.ContinueOnError)
	o.Register(fs, service.DefaultNATSURL, "URL of the NATS server or cluster")
	fs.StringVar(&o.host, "host", "", "host name this reader serves: letters, digits, - and _ (default: this machine's short host name)")
	fs.IntVar(&o.workers, "workers", reader.DefaultWorkers, "chunks read or written at once")
	fs.Var(&o.compress, "compress",
		"chunks this reader compresses and stores itself at once, the rest going to the fleet's compressors: auto (one per CPU), or N (0: the fleet's compressors take all)")
	fs.Var(&o.maxHeld, "max-held", "raw chunk bytes held for the fleet's compressors at most (the window also follows the live compressors)")
	fs.StringVar(&o.dataAddr, "data-addr", dataAddrAuto,
		"address the data server compressors fetch chunks from listens on: auto (this host's address toward NATS, any port), HOST:PORT, or off (chunks go through NATS)")
	fs.StringVar(&o.advertise, "data-advertise", "", "HOST:PORT compressors reach the data server at, when not the address it listens on (NAT, containers)")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long in-flight work may finish after SIGTERM")
	fs.DurationVar(&o.storeTimeout, "store-timeout", retry.DefaultMaxElapsed,
		"how long a repository call is retried while the repository is unreachable before the chunk, and its job, fail")
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
		o.host = service.LocalHost()
	}
	compress := int(o.compress)
	if o.compress == countAuto {
		compress = runtime.NumCPU()
	}
	keys, err := service.WriteKeysFromEnv()
	if err != nil {
		return err
	}
	identity, err := service.HostIdentityFromEnv(logger)
	if err != nil {
		return err
	}
	nc, err := service.Connect(ctx, service.NATSFromEnv(service.ConnectOptions{URL: o.NATS, Name: "reader-" + o.host, Logger: logger}))
	if err != nil {
		return err
	}
	defer nc.Close()
	dataAddr, err := resolveDataAddr(o.dataAddr, nc)
	if err != nil {
		return err
	}
	m := metrics.New(metrics.RoleReader)
	repos := service.Repos(o.S3Endpoint, o.storeTimeout, keys, logger)
	cfg := reader.Config{
		Host: o.host, Workers: o.workers, Repos: repos, Logger: logger, DrainTimeout: o.drain, Metrics: m,
		MaxHeld: int64(o.maxHeld), DataAddr: dataAddr, DataAdvertise: o.advertise, Overflow: true, Identity: identity,
	}
	var comp *compressor.Compressor
	if compress > 0 {
		comp, err = compressor.New(nc, compressor.Config{
			Name: "reader-" + o.host, Workers: compress, Repos: repos, Logger: logger, Metrics: m, DrainTimeout: o.drain,
			Assist: true,
		})
		if err != nil {
			return err
		}
		cfg.Compress = comp
	}
	rd, err := reader.New(nc, cfg)
	if err != nil {
		return err
	}
	if comp == nil {
		return service.Run(ctx, o.MetricsAddr, m, nc, logger, rd.Run)
	}
	// The reader's compressor stores first the chunks the reader hands it,
	// and, with workers to spare, the ones the fleet's compressors have not
	// taken: a fleet of readers alone backs up too.
	return service.Run(ctx, o.MetricsAddr, m, nc, logger, func(ctx context.Context) error {
		return service.Together(ctx, rd.Run, comp.Run)
	})
}

// resolveDataAddr returns the address the data server listens on for the
// --data-addr flag: "" (none) for off, and for auto this host's address on
// the route to the NATS server nc is connected to, port 0.
func resolveDataAddr(flagValue string, nc *nats.Conn) (string, error) {
	switch flagValue {
	case "off", "":
		return "", nil
	case dataAddrAuto:
	default:
		if _, _, err := net.SplitHostPort(flagValue); err != nil {
			return "", fmt.Errorf("--data-addr %q: want auto, off or HOST:PORT: %w", flagValue, err)
		}
		return flagValue, nil
	}
	server := nc.ConnectedAddr()
	if server == "" {
		return "", fmt.Errorf("--data-addr auto: not connected to a NATS server; give HOST:PORT")
	}
	// A UDP "connection" sends nothing: it only asks the kernel which
	// local address routes to the server.
	conn, err := net.Dial("udp", server)
	if err != nil {
		return "", fmt.Errorf("--data-addr auto: route to NATS server %s: %w", server, err)
	}
	defer conn.Close()
	host, _, err := net.SplitHostPort(conn.LocalAddr().String())
	if err != nil {
		return "", fmt.Errorf("--data-addr auto: %w", err)
	}
	return net.JoinHostPort(host, "0"), nil
}

// countFlag is a count flag that also takes "auto" (countAuto).
type countFlag int

// countAuto is the value of a countFlag set to "auto".
const countAuto countFlag = -1

func (c *countFlag) Set(s string) error {
	if s == "auto" {
		*c = countAuto
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want auto or a count of 0 or more, not %q", s)
	}
	*c = countFlag(n)
	return nil
}

func (c *countFlag) String() string {
	if c == nil || *c == countAuto {
		return "auto"
	}
	return strconv.Itoa(int(*c))
}
