package testenv

import (
	"errors"
	"testing"
)

// errNoNATS means no nats-server binary was found.
var errNoNATS = errors.New("nats-server binary not found")

// natsSystemBins are where a system package installs nats-server (Debian's
// apt-get install nats-server); a variable for the tests.
var natsSystemBins = []string{"/usr/sbin/nats-server"}

// NATSServerBin returns a nats-server binary: $BULK_NATS_BIN, else
// nats-server on $PATH, else the one scripts/install-nats.sh builds into
// $GOPATH/bin (GOPATH defaulting to ~/go), else Debian's
// /usr/sbin/nats-server. Without one the test is skipped, or fails when
// CI=true (see SkipOrFail); a $BULK_NATS_BIN that cannot run fails it.
func NATSServerBin(t testing.TB) string {
	t.Helper()
	bin, err := natsServerBinary()
	if errors.Is(err, errNoNATS) {
		SkipOrFail(t, "%v; install one with scripts/install-nats.sh (or apt-get install nats-server) or set BULK_NATS_BIN", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// natsServerBinary finds the nats-server binary as NATSServerBin says.
func natsServerBinary() (string, error) {
	return findBinary("nats-server", "BULK_NATS_BIN", errNoNATS, natsSystemBins...)
}
