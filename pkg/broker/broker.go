// Package broker runs an embedded NATS server with JetStream: the control
// plane of a single coordinator or of the whole single-process fleet, and the
// server in tests. It is imported only by cmd/, fleet and testenv.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultMaxPayload is the largest message the embedded server accepts. It
// is raised from NATS's 1 MiB default so default-size raw chunks travel as
// single messages; the server warns above 8 MiB.
const DefaultMaxPayload = 8 << 20

// Config configures an embedded server. The zero value listens on a random
// loopback port with JetStream data in a temporary directory of the caller's
// choosing (StoreDir is required).
type Config struct {
	// Listen is "host:port"; port 0 or -1 picks a free port, "" means
	// 127.0.0.1 on a random port.
	Listen string
	// StoreDir holds JetStream's file storage.
	StoreDir string
	// MaxPayload bounds one message; 0 means DefaultMaxPayload.
	MaxPayload int32
	// InProcessOnly accepts no TCP connections at all; clients use
	// InProcessConn.
	InProcessOnly bool
	// User and Password, when set, are required of every client.
	User, Password string
	// TLSCert and TLSKey, when set, are PEM files of the server's
	// certificate and key: every TCP client must then speak TLS (and
	// trust the certificate's issuer). In-process clients need no TLS.
	TLSCert, TLSKey string
	// ServerName names the server; defaults to a random one.
	ServerName string
	// Logger receives the server's notices and errors; nil discards them.
	Logger *slog.Logger
}

// Broker is a running embedded NATS server.
type Broker struct {
	srv *server.Server
	cfg Config
}

// Start runs a server and waits until it accepts connections.
func Start(cfg Config) (*Broker, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("broker: StoreDir is required")
	}
	host, port := "127.0.0.1", -1
	if cfg.Listen != "" {
		h, p, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("broker: listen address %q: %w", cfg.Listen, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("broker: listen port %q: %w", p, err)
		}
		if port == 0 {
			port = -1
		}
		if h != "" {
			host = h
		}
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	opts := &server.Options{
		ServerName:    cfg.ServerName,
		Host:          host,
		Port:          port,
		DontListen:    cfg.InProcessOnly,
		JetStream:     true,
		StoreDir:      cfg.StoreDir,
		MaxPayload:    cfg.MaxPayload,
		NoSigs:        true,
		Username:      cfg.User,
		Password:      cfg.Password,
		MaxPending:    256 << 20,
		WriteDeadline: 30 * time.Second,
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, errors.New("broker: TLS needs both a certificate and a key file")
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("broker: TLS: %w", err)
		}
		opts.TLS, opts.TLSConfig = true, tc
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(&slogAdapter{l: logger.With("component", "nats-server"), fatal: fatal}, false, false, false)
	go srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-fatal: // e.g. the listen address is in use
			srv.Shutdown()
			return nil, fmt.Errorf("broker: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, fmt.Errorf("broker: server on %s:%d not ready after 30s", host, port)
		}
	}
	return &Broker{srv: srv, cfg: cfg}, nil
}

// ClientURL returns the URL clients connect to over TCP ("" with
// InProcessOnly).
func (b *Broker) ClientURL() string {
	if b.cfg.InProcessOnly {
		return ""
	}
	return b.srv.ClientURL()
}

// Connect returns a client connection to the server: in-process when the
// server listens on no port or requires TLS, otherwise over TCP, with the
// broker's credentials.
func (b *Broker) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1)}, opts...)
	if b.cfg.User != "" {
		opts = append(opts, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	url := b.ClientURL()
	if b.cfg.InProcessOnly || b.cfg.TLSCert != "" {
		// In process, TLS is neither needed nor offered: a tls:// URL
		// would ask for it.
		opts = append(opts, nats.InProcessServer(b.srv))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect: %w", err)
	}
	return nc, nil
}

// Server returns the underlying server, for tests that inspect it.
func (b *Broker) Server() *server.Server { return b.srv }

// Shutdown stops the server and waits until it is down.
func (b *Broker) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// ShutdownPrivate is Shutdown for a server whose clients are all in this
// process and already closed. It stops JetStream first, keeping its
// state, so the server does not spend 50 ms letting pull requests those
// clients left pending learn that it is going away; nobody is left to
// learn it.
func (b *Broker) ShutdownPrivate() {
	if err := b.srv.ShutdownJetStream(); err != nil {
		b.srv.Warnf("stop JetStream: %v", err)
	}
	b.Shutdown()
}

// slogAdapter logs the server's messages with slog and hands fatal ones to
// Start, which fails with them instead of waiting for a server that died.
type slogAdapter struct {
	l     *slog.Logger
	fatal chan<- string
}

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.l.Error(msg)
	select {
	case a.fatal <- msg:
	default:
	}
}
func (a *slogAdapter) Errorf(format string, v ...any) { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any) {}
