package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSecurityNATS runs the fleet against a coordinator whose embedded
// NATS server requires TLS (a certificate from a CA made here) and a user
// and password. Clients without TLS, without trust in the CA, without
// credentials or with a wrong password are refused; the services and
// bulkctl, given the secrets in the environment (BULK_NATS_USER,
// BULK_NATS_PASSWORD, BULK_NATS_CA), back up and verify. No secret
// appears on a command line, and no binary has a flag for one.
func TestSecurityNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	user, password := "bulk-"+newJobID()[:8], newJobID()
	// The services inherit the environment: the secrets travel there.
	t.Setenv("BULK_NATS_USER", user)
	t.Setenv("BULK_NATS_PASSWORD", password)
	t.Setenv("BULK_NATS_CA", caFile)
	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"), "--tls-cert", certFile, "--tls-key", keyFile)
	coord.waitLog(t, "coordinator serving") // it has connected in process and set up the streams

	refused := []struct {
		name string
		opts []nats.Option
		want string
	}{
		{"untrusted certificate", []nats.Option{nats.UserInfo(user, password)}, "certificate signed by unknown authority"},
		{"no credentials", []nats.Option{nats.RootCAs(caFile)}, "Authorization Violation"},
		{"wrong password", []nats.Option{nats.RootCAs(caFile), nats.UserInfo(user, "not-"+password)}, "Authorization Violation"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			nc, err := nats.Connect(url, append(tc.opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
			if err == nil {
				nc.Close()
				t.Fatalf("connected; want the server to refuse")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
				t.Errorf("refused with %q, want an error mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("refused/plaintext", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		info, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("server greeting %q (%v), want INFO with tls_required", info, err)
		}
		fmt.Fprintf(conn, "CONNECT {\"user\":%q,\"pass\":%q}\r\nPING\r\n", user, password)
		reply, _ := io.ReadAll(conn) // the server closes the connection
		if bytes.Contains(reply, []byte("PONG")) {
			t.Errorf("a plaintext client got %q, want the connection closed", reply)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.RootCAs(caFile), nats.UserInfo(user, password), nats.MaxReconnects(0))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if !nc.TLSRequired() {
			t.Errorf("connection without TLS")
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.AccountInfo(t.Context()); err != nil {
			t.Errorf("JetStream over the authenticated connection: %v", err)
		}
	})

	reader := startProc(t, "reader", "reader", "--nats", url, "--host", "testhost", "--log-format", "json")
	comp := startProc(t, "compressor", "compressor", "--nats", url, "--workers", "1", "--log-format", "json")
	reader.waitLog(t, "reader serving")
	comp.waitLog(t, "compressor serving")
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 8*mib, 4)
	repo := filepath.Join(dir, "repo")
	bulkctlProcOK(t, "backup", "testhost:"+vol, "-r", repo, "--nats", url, "--chunk-size", "1MiB")
	r := bulkctlProcOK(t, "verify", "latest", "-r", repo, "--compare", vol)
	if !strings.Contains(r.stdout, "OK") {
		t.Errorf("verify output:\n%s", r.stdout)
	}

	// bulkctl without the secrets is refused with a clear error.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULK_NATS_USER=") && !strings.HasPrefix(kv, "BULK_NATS_PASSWORD=") {
			env = append(env, kv)
		}
	}
	r = bulkctlProcEnv(t, env, "jobs", "--nats", url)
	t.Logf("bulkctl without credentials: %s", strings.TrimSpace(r.stderr))
	if r.code != exitError || !strings.Contains(r.stderr, "Authorization Violation") {
		t.Errorf("bulkctl jobs without credentials: exit %d, want %d and an authorization error; stderr:\n%s", r.code, exitError, r.stderr)
	}

	// Secrets never on a command line: not in the processes' arguments,
	// and no binary offers a flag for one.
	for _, p := range []*proc{coord, reader, comp} {
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "cmdline"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(cmdline, []byte(password)) || bytes.Contains(cmdline, []byte(user)) {
			t.Errorf("%s has a NATS secret on its command line", p.name)
		}
	}
	for _, bin := range []string{"coordinator", "reader", "compressor", "bulkctl"} {
		args := []string{"-h"}
		if bin == "bulkctl" {
			args = []string{"backup", "-h"}
		}
		out, _ := exec.Command(filepath.Join(testenv.Binaries(t), bin), args...).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "-") {
				continue
			}
			flagName := strings.Fields(line)[0]
			if slices.ContainsFunc([]string{"password", "secret", "token", "user"}, func(s string) bool { return strings.Contains(flagName, s) }) {
				t.Errorf("%s has a flag for a secret: %s", bin, flagName)
			}
		}
	}
	stop(t, comp, reader, coord)
}

// writeTestPKI writes a self-signed CA and a server certificate it signed
// for 127.0.0.1 and localhost, as PEM files under dir; it returns the CA,
// certificate and key paths.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bulkbackup test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bulkbackup test server"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}
