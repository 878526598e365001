package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// natsNodes is a JetStream cluster of nats-server processes.
type natsNodes struct {
	procs   map[string]*proc  // by server name
	client  map[string]string // client URL, by server name
	monitor map[string]string // monitoring base URL, by server name
	url     string            // every client URL, joined by commas
}

// natsCluster starts a 3-node JetStream cluster of nats-server processes
// on 127.0.0.1 and waits until it can place replicated streams.
func natsCluster(t *testing.T, bin string) *natsNodes {
	t.Helper()
	dir := t.TempDir()
	const n = 3
	clientAddrs, routeAddrs := make([]string, n), make([]string, n)
	routes := make([]string, n)
	for i := range n {
		clientAddrs[i], routeAddrs[i] = testenv.FreeAddr(t), testenv.FreeAddr(t)
		routes[i] = "nats-route://" + routeAddrs[i]
	}
	c := &natsNodes{procs: make(map[string]*proc), client: make(map[string]string), monitor: make(map[string]string)}
	urls := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		monitor := testenv.FreeAddr(t)
		conf := fmt.Sprintf(`server_name: %s
listen: %s
http: %s
max_payload: 2MB
jetstream { store_dir: %q }
cluster {
  name: bulk-test
  listen: %s
  routes: [%s]
}
`, name, clientAddrs[i], monitor, filepath.Join(dir, name), routeAddrs[i], strings.Join(routes, ", "))
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.procs[name] = startExe(t, "nats-"+name, bin, "-c", path)
		urls[i] = "nats://" + clientAddrs[i]
		c.client[name], c.monitor[name] = urls[i], "http://"+monitor
	}
	c.url = strings.Join(urls, ",")
	for i, addr := range clientAddrs {
		c.procs[fmt.Sprintf("n%d", i+1)].waitLog(t, "Server is ready")
		if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
			t.Fatal(err)
		} else {
			conn.Close()
		}
	}

	// Ready when a stream with three replicas can be created.
	e := &faultEnv{url: c.url}
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
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready within 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster's readiness
	}
}

// traffic returns the bytes each node has received from and sent to
// clients and other nodes so far (its /varz in_bytes + out_bytes).
func (c *natsNodes) traffic(t *testing.T) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	for name, base := range c.monitor {
		resp, err := http.Get(base + "/varz")
		if err != nil {
			t.Fatalf("varz of %s: %v", name, err)
		}
		var v struct {
			InBytes  int64 `json:"in_bytes"`
			OutBytes int64 `json:"out_bytes"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("varz of %s: %v", name, err)
		}
		out[name] = v.InBytes + v.OutBytes
	}
	return out
}

// TestFaultNATSNodeKilled runs the fleet on a 3-node JetStream cluster of
// nats-server processes, with the durable streams and the job bucket
// replicated three times, and kills one node mid-backup: the one leading
// the ready stream, whose descriptors name every chunk the reader holds.
// The descriptors are replicated, so the compressors go on from another
// node, and the job completes and verifies; a restore through the two
// remaining nodes is byte-exact.
func TestFaultNATSNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries and a NATS cluster")
	}
	bin := testenv.NATSServerBin(t)
	testenv.Binaries(t)
	cluster := natsCluster(t, bin)
	url := cluster.url

	e := &faultEnv{dir: t.TempDir(), url: url}
	e.repo = filepath.Join(e.dir, "repo")
	e.size = faultVolumeSize()
	e.vol = writeVolume(t, filepath.Join(e.dir, "vol.img"), e.size, 31)
	e.nonZero = nonZeroChunks(t, e.vol, faultChunkSize)
	e.coord = startProc(t, "coordinator", "coordinator", "--nats", url, "--replicas", "3", "--chunk-timeout", "10s", "--log-format", "json")
	e.coord.waitLog(t, "coordinator serving")
	e.reader = startFaultReader(t, "reader", url)
	e.connect(t)
	comp1 := e.startCompressor(t, "comp1")
	comp2 := e.startCompressor(t, "comp2")
	start := time.Now()
	jobID, w := e.backup(t)

	w.until(t, e.strikePoint())
	info, err := streamInfo(t, e.js, queue.StreamReady)
	if err != nil {
		t.Fatal(err)
	}
	victim := info.Cluster.Leader
	if cluster.procs[victim] == nil {
		t.Fatalf("ready stream led by node %q, not one of the test's", victim)
	}
	kill(t, cluster.procs[victim])
	doneAtKill, _ := w.counts()
	t.Logf("killed %s, the leader of the ready stream, with %d of %d stored chunks done", victim, doneAtKill, e.nonZero)

	ev := e.wait(t, jobID)
	t.Logf("job ended %s in %s", ev.State, time.Since(start).Round(time.Millisecond))
	e.check(t, ev)
	if doneAtKill >= e.nonZero {
		t.Errorf("%s killed with %d of %d stored chunks done: want the kill mid-job", victim, doneAtKill, e.nonZero)
	}
	if info, err := streamInfo(t, e.js, queue.StreamReady); err != nil || info.Cluster.Leader == victim {
		t.Errorf("ready stream after the kill: %+v (%v), want it led by a live node", info, err)
	}

	out := filepath.Join(e.dir, "out.img")
	bulkctlProcOK(t, "restore", "latest", faultHost+":"+out, "-r", e.repo, "--nats", url)
	sameFile(t, e.vol, out)
	stop(t, comp1, comp2, e.reader, e.coord)
}

// TestClusterDataPlane backs up two hosts at once through a 3-node cluster,
// each host's reader connected to a node of its own and the compressors to
// the third, and reads every node's traffic: the raw chunks travel from
// the readers' data servers to the compressors directly, so no node
// carries them, and the cluster's capacity is not one server's. Only
// descriptors, completions and events cross the nodes: all the nodes
// together carry a small fraction of the bytes backed up.
func TestClusterDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries and a NATS cluster")
	}
	bin := testenv.NATSServerBin(t)
	testenv.Binaries(t)
	cluster := natsCluster(t, bin)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	const size = 48 << 20
	coord := startProc(t, "coordinator", "coordinator", "--nats", cluster.url, "--replicas", "3", "--log-format", "json")
	coord.waitLog(t, "coordinator serving")
	hosts := map[string]string{"hostA": "n1", "hostB": "n2"} // host -> the node its reader uses
	vols := make(map[string]string)
	var procs []*proc
	for host, node := range hosts {
		vols[host] = writeVolume(t, filepath.Join(dir, host+".img"), size, int64(len(host)+len(node)))
		r := startProc(t, "reader-"+host, "reader", "--nats", cluster.client[node], "--host", host, "--log-format", "json",
			"--compress", "0", "--data-addr", "127.0.0.1:0")
		r.waitLog(t, "reader serving")
		procs = append(procs, r)
	}
	for _, name := range []string{"comp1", "comp2"} {
		c := startProc(t, name, "compressor", "--nats", cluster.client["n3"], "--workers", "1", "--name", name, "--log-format", "json")
		c.waitLog(t, "compressor serving")
		procs = append(procs, c)
	}

	before := cluster.traffic(t)
	type backup struct {
		host string
		r    result
	}
	results := make(chan backup, len(hosts))
	for host := range hosts {
		go func() {
			results <- backup{host, bulkctlProc(t, "backup", host+":"+vols[host], "-r", repo, "--nats", cluster.client["n3"], "--chunk-size", "1MiB", "--json")}
		}()
	}
	snapshots := make(map[string]string) // host -> its snapshot
	for range hosts {
		b := <-results
		var out struct {
			SnapshotID string `json:"snapshot_id"`
		}
		if b.r.code != 0 || json.Unmarshal([]byte(b.r.stdout), &out) != nil {
			t.Fatalf("backup of %s: exit %d\n%s%s", b.host, b.r.code, b.r.stdout, b.r.stderr)
		}
		snapshots[b.host] = out.SnapshotID
	}
	after := cluster.traffic(t)

	var total int64
	var line []string
	for name := range cluster.procs {
		d := after[name] - before[name]
		total += d
		line = append(line, fmt.Sprintf("%s %.1f MiB", name, float64(d)/(1<<20)))
	}
	backedUp := int64(len(hosts)) * size
	slices.Sort(line)
	t.Logf("NATS traffic while backing up %d MiB from two hosts: %s; %.1f%% of the bytes backed up in all",
		backedUp>>20, strings.Join(line, ", "), 100*float64(total)/float64(backedUp))
	if total > backedUp/10 {
		t.Errorf("the NATS nodes carried %d bytes for %d bytes backed up: raw chunks went through them", total, backedUp)
	}
	for _, p := range procs {
		if strings.Contains(p.log(), "fetching over NATS") {
			t.Errorf("%s fetched chunks over NATS: the data servers were not reached", p.name)
		}
	}
	for host := range hosts {
		r := bulkctlProcOK(t, "verify", snapshots[host], "-r", repo, "--compare", vols[host])
		if !strings.Contains(r.stdout, "OK") {
			t.Errorf("verify of %s:\n%s", host, r.stdout)
		}
	}
	stop(t, append(procs, coord)...)
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
