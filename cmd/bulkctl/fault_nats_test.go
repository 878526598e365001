package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// natsServerBin returns a nats-server binary: $BULK_NATS_BIN, else
// nats-server on $PATH, else the one scripts/install-nats.sh builds into
// $GOPATH/bin, else Debian's /usr/sbin/nats-server. Without one the test is
// skipped, or fails when CI=true.
func natsServerBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("BULK_NATS_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("nats-server"); err == nil {
		return bin
	}
	var candidates []string
	gopath := filepath.SplitList(os.Getenv("GOPATH"))
	if home, err := os.UserHomeDir(); len(gopath) == 0 && err == nil {
		gopath = []string{filepath.Join(home, "go")}
	}
	if len(gopath) > 0 {
		candidates = append(candidates, filepath.Join(gopath[0], "bin", "nats-server"))
	}
	for _, bin := range append(candidates, "/usr/sbin/nats-server") {
		if _, err := exec.LookPath(bin); err == nil {
			return bin
		}
	}
	msg := "no nats-server binary; install one with scripts/install-nats.sh (or apt-get install nats-server) or set BULK_NATS_BIN"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// natsCluster starts a 3-node JetStream cluster of nats-server processes
// on 127.0.0.1 and waits until it can place replicated streams. It returns
// the nodes, by server name, and the client URLs joined by commas.
func natsCluster(t *testing.T, bin string) (map[string]*proc, string) {
	t.Helper()
	dir := t.TempDir()
	const n = 3
	clientAddrs, routeAddrs := make([]string, n), make([]string, n)
	routes := make([]string, n)
	for i := range n {
		clientAddrs[i], routeAddrs[i] = freeAddr(t), freeAddr(t)
		routes[i] = "nats-route://" + routeAddrs[i]
	}
	nodes := make(map[string]*proc)
	urls := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		// max_payload lets 1 MiB raw chunks travel as messages.
		conf := fmt.Sprintf(`server_name: %s
listen: %s
max_payload: 2MB
jetstream { store_dir: %q }
cluster {
  name: bulk-test
  listen: %s
  routes: [%s]
}
`, name, clientAddrs[i], filepath.Join(dir, name), routeAddrs[i], strings.Join(routes, ", "))
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[name] = startExe(t, "nats-"+name, bin, "-c", path)
		urls[i] = "nats://" + clientAddrs[i]
	}
	url := strings.Join(urls, ",")
	for i, addr := range clientAddrs {
		nodes[fmt.Sprintf("n%d", i+1)].waitLog(t, "Server is ready")
		if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
			t.Fatal(err)
		} else {
			conn.Close()
		}
	}

	// Ready when a stream with three replicas can be created.
	e := &faultEnv{url: url}
	e.connect(t)
	defer e.nc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Storage: jetstream.MemoryStorage, Replicas: 3})
		if err == nil {
			err = e.js.DeleteStream(ctx, "PROBE")
		}
		cancel()
		if err == nil {
			return nodes, url
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready within 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFaultNATSNodeKilled runs the fleet on a 3-node JetStream cluster of
// nats-server processes, with the durable streams and the job bucket
// replicated three times, and kills one node mid-backup: the node holding
// the raw queue, the worst case, as that memory stream has one replica.
// The coordinator recreates the raw queue on a node still up, the chunks
// it held are re-issued after the chunk timeout, and the job completes and
// verifies; a restore through the two remaining nodes is byte-exact.
func TestFaultNATSNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries and a NATS cluster")
	}
	bin := natsServerBin(t)
	binaries(t)
	nodes, url := natsCluster(t, bin)

	e := &faultEnv{dir: t.TempDir(), url: url}
	e.repo = filepath.Join(e.dir, "repo")
	e.size = faultVolumeSize()
	e.vol = writeVolume(t, filepath.Join(e.dir, "vol.img"), e.size, 31)
	e.nonZero = nonZeroChunks(t, e.vol, faultChunkSize)
	e.coord = startProc(t, "coordinator", "coordinator", "--nats", url, "--replicas", "3", "--chunk-timeout", "10s", "--log-format", "json")
	e.coord.waitLog(t, "coordinator serving")
	e.reader = startProc(t, "reader", "reader", "--nats", url, "--host", faultHost, "--log-format", "json")
	e.reader.waitLog(t, "reader serving")
	e.connect(t)
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	info, err := streamInfo(t, e.js, queue.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	victim := info.Cluster.Leader
	if nodes[victim] == nil {
		t.Fatalf("raw queue on node %q, not one of the test's", victim)
	}
	kill(t, nodes[victim])
	doneAtKill, _ := w.counts()
	t.Logf("killed %s, the node of the raw queue, with %d of %d stored chunks done", victim, doneAtKill, e.nonZero)

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s", ev.State, time.Since(start).Round(time.Millisecond))
	e.check(t, ev)
	if doneAtKill >= e.nonZero {
		t.Errorf("%s killed with %d of %d stored chunks done: want the kill mid-job", victim, doneAtKill, e.nonZero)
	}
	if !strings.Contains(e.coord.log(), "raw stream recreated") {
		t.Errorf("the coordinator did not log that it recreated the raw stream")
	}
	if info, err := streamInfo(t, e.js, queue.StreamRaw); err != nil || info.Cluster.Leader == victim {
		t.Errorf("raw queue after the kill: %+v (%v), want it on a live node", info, err)
	}

	out := filepath.Join(e.dir, "out.img")
	bulkctlProcOK(t, "restore", "latest", faultHost+":"+out, "-r", e.repo, "--nats", url)
	sameFile(t, e.vol, out)
	stop(t, comp1, comp2, e.reader, e.coord)
}

// streamInfo returns the info of stream name.
func streamInfo(t *testing.T, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}
