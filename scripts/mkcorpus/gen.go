package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// Generated files fill what the machine cannot supply: logs (a build
// machine has few) and incompressible bytes beyond its compressed files.
// Both come from a seeded generator, so the same seed gives the same bytes.

// generated is a file to be written by gen into a corpus.
type generated struct {
	rel  string // path inside the corpus
	size int64
	cat  category
	seed uint64
}

// write creates dir/g.rel with g's content.
func (g generated) write(dir string) error {
	path := filepath.Join(dir, g.rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	switch g.cat {
	case catLog:
		err = writeLog(w, g.size, g.seed)
	default:
		_, err = io.CopyN(w, rand.NewChaCha8(seed32(g.seed)), g.size)
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// seed32 stretches a 64-bit seed to a ChaCha8 key.
func seed32(s uint64) [32]byte {
	var k [32]byte
	for i := range 4 {
		s = splitmix(s)
		for j := range 8 {
			k[i*8+j] = byte(s >> (8 * j))
		}
	}
	return k
}

// splitmix is the SplitMix64 step: a cheap, well-mixed sequence of seeds.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Vocabulary of the generated logs: realistic enough that zstd finds the
// repetition real logs have (timestamps, hosts, fixed message templates)
// and the variety they have (IDs, addresses, durations, sizes).
var (
	logHosts    = []string{"web-01", "web-02", "db-01", "db-02", "cache-01", "build-03", "backup-01", "edge-07"}
	logServices = []string{"sshd", "systemd", "kernel", "cron", "nginx", "postgres", "dockerd", "containerd", "sudo", "CRON", "kubelet"}
	logUsers    = []string{"root", "deploy", "alice", "bob", "postgres", "www-data", "backup", "ci"}
	logPaths    = []string{"/api/v1/items", "/api/v1/users", "/healthz", "/metrics", "/static/app.js", "/static/style.css",
		"/login", "/logout", "/api/v2/search", "/api/v1/orders", "/favicon.ico", "/robots.txt"}
	logAgents = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
		"curl/7.88.1", "Go-http-client/1.1", "Prometheus/2.48.0", "kube-probe/1.29",
	}
	logLevels = []string{"DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"}
	logMsgs   = []string{"request served", "job started", "job ended", "chunk stored", "cache miss", "retrying",
		"connection reset by peer", "slow query", "config reloaded", "worker heartbeat"}
	logStatus = []int{200, 200, 200, 200, 200, 201, 204, 301, 304, 400, 403, 404, 404, 500, 502}
)

// writeLog writes size bytes of log lines in one of three formats, chosen
// by the seed: syslog, web access log or JSON (slog) lines.
func writeLog(w io.Writer, size int64, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, splitmix(seed)))
	format := rng.IntN(3)
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(300 * 24 * time.Hour))))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	ip := func() string {
		return fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(256), 1+rng.IntN(254))
	}
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	host := pick(logHosts)
	var line []byte
	for written := int64(0); written < size; written += int64(len(line)) {
		t = t.Add(time.Duration(rng.Int64N(int64(2 * time.Second))))
		switch format {
		case 0:
			svc := pick(logServices)
			var msg string
			switch rng.IntN(5) {
			case 0:
				msg = fmt.Sprintf("Accepted publickey for %s from %s port %d ssh2: ED25519 SHA256:%s", pick(logUsers), ip(), 1024+rng.IntN(60000), hex(43))
			case 1:
				msg = fmt.Sprintf("pam_unix(%s:session): session opened for user %s(uid=%d) by (uid=0)", svc, pick(logUsers), 1000+rng.IntN(20))
			case 2:
				msg = fmt.Sprintf("Started %s.service - %s daemon.", svc, svc)
			case 3:
				msg = fmt.Sprintf("(%s) CMD (/usr/local/bin/rotate --keep %d /var/log/%s)", pick(logUsers), 1+rng.IntN(30), svc)
			default:
				msg = fmt.Sprintf("%s: link is up, %d Mbps, full duplex, rx %d tx %d", "eth0", 1000*(1+rng.IntN(10)), rng.IntN(1<<30), rng.IntN(1<<30))
			}
			line = fmt.Appendf(line[:0], "%s %s %s[%d]: %s\n", t.Format(time.Stamp), host, svc, 100+rng.IntN(60000), msg)
		case 1:
			path := pick(logPaths)
			if rng.IntN(2) == 0 {
				path += fmt.Sprintf("/%d?page=%d", rng.IntN(100000), rng.IntN(50))
			}
			method := "GET"
			if rng.IntN(6) == 0 {
				method = "POST"
			}
			line = fmt.Appendf(line[:0], "%s - - [%s] \"%s %s HTTP/1.1\" %d %d \"-\" \"%s\" %.3f\n",
				ip(), t.Format("02/Jan/2006:15:04:05 -0700"), method, path, logStatus[rng.IntN(len(logStatus))],
				rng.IntN(200000), pick(logAgents), rng.Float64()*2)
		default:
			line = fmt.Appendf(line[:0], "{\"time\":%q,\"level\":%q,\"msg\":%q,\"host\":%q,\"job_id\":\"%s-%s-%s-%s-%s\",\"bytes\":%d,\"duration_ms\":%.2f}\n",
				t.Format(time.RFC3339Nano), pick(logLevels), pick(logMsgs), host,
				hex(8), hex(4), hex(4), hex(4), hex(12), rng.Int64N(1<<26), rng.Float64()*900)
		}
		if remaining := size - written; int64(len(line)) > remaining {
			line = line[:remaining]
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}
