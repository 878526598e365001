package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// writeSecret writes a secret file (mode 0600) in dir and returns its path.
func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEncryptedCLI walks an encrypted repository through bulkctl in this
// process: init, backup, restore, verify and an incremental backup with
// the password; the keys managed; write keys that add backups but read
// none; and bad secrets refused with a clear error, harming nothing. It
// sets the secrets' environment variables, so it cannot run in parallel.
func TestEncryptedCLI(t *testing.T) {
	dir := t.TempDir()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 3*mib, 41)
	marker := []byte("BULKBACKUP-SECRET-MARKER-7731 the payroll of everyone ")
	data, err := os.ReadFile(vol)
	if err != nil {
		t.Fatal(err)
	}
	copy(data[mib:], bytes.Repeat(marker, 64<<10/len(marker)))
	if err := os.WriteFile(vol, data, 0o600); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	pw := writeSecret(t, dir, "password", "correct horse battery staple\n")
	t.Setenv("BULK_PASSWORD_FILE", "")
	t.Setenv("BULK_PASSWORD", "")
	t.Setenv("BULK_IDENTITY_FILE", "")
	t.Setenv("BULK_WRITE_KEY_FILE", "")

	fails(t, exitUsage, []string{"needs a password", "--plaintext"}, "init", "-r", repo)
	noFile(t, repo+"/config")
	t.Setenv("BULK_PASSWORD_FILE", pw)
	fails(t, exitUsage, []string{"--plaintext takes no password"}, "init", "-r", repo, "--plaintext")
	r := ok(t, "init", "-r", repo, "--work-factor", "10", "--label", "ops", "--json")
	var ir initResult
	if err := json.Unmarshal([]byte(r.stdout), &ir); err != nil || !ir.Encrypted || len(ir.Keys) != 1 || ir.Fingerprint == "" {
		t.Fatalf("init --json = %s (%v)", r.stdout, err)
	}
	fails(t, exitError, []string{"already exists"}, "init", "-r", repo, "--work-factor", "10")

	first := backup(t, vol, repo, "--chunk-size", "256KiB")
	// Nothing in the repository holds the data, or names a chunk by the
	// SHA-256 of its bytes.
	sums := make(map[string]bool)
	for off := 0; off < len(data); off += 256 * kib {
		s := sha256.Sum256(data[off:min(off+256*kib, len(data))])
		sums[hex.EncodeToString(s[:])] = true
	}
	err = filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		obj, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(obj, marker[:24]) || bytes.Contains(obj, []byte(vol)) {
			t.Errorf("%s holds the backed-up data or its path in the clear", p)
		}
		if sums[d.Name()] {
			t.Errorf("%s is named by the SHA-256 of a chunk", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.img")
	ok(t, "restore", "latest", out, "-r", repo)
	sameFile(t, vol, out)
	ok(t, "verify", "latest", "-r", repo, "--compare", vol)
	if again := backup(t, vol, repo, "--chunk-size", "256KiB"); again.NewBytes != 0 || again.NewChunks != 0 {
		t.Errorf("an unchanged volume's second backup stored %d chunks (%d bytes), want none", again.NewChunks, again.NewBytes)
	}

	// Wrong, missing and unsafe secrets: a clear error, exit 1, nothing
	// written.
	before := listFiles(t, repo)
	t.Setenv("BULK_PASSWORD_FILE", writeSecret(t, dir, "wrong", "Tr0ub4dor&3\n"))
	fails(t, exitError, []string{"wrong password"}, "restore", "latest", filepath.Join(dir, "wrong.img"), "-r", repo)
	noFile(t, filepath.Join(dir, "wrong.img"))
	fails(t, exitError, []string{"wrong password"}, "backup", vol, "-r", repo)
	t.Setenv("BULK_PASSWORD_FILE", filepath.Join(dir, "no-such-file"))
	fails(t, exitError, []string{"BULK_PASSWORD_FILE", "no-such-file"}, "snapshots", "-r", repo)
	open := writeSecret(t, dir, "readable", "correct horse battery staple\n")
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BULK_PASSWORD_FILE", open)
	fails(t, exitError, []string{"accessible by others", "chmod 600"}, "verify", "latest", "-r", repo)
	t.Setenv("BULK_PASSWORD_FILE", "")
	fails(t, exitError, []string{"encrypted", "BULK_PASSWORD_FILE", "BULK_IDENTITY_FILE"}, "snapshots", "-r", repo)
	if after := listFiles(t, repo); !equalStrings(before, after) {
		t.Errorf("failed commands changed the repository:\n before %v\n after  %v", before, after)
	}

	// Keys: a second password, then an age identity; passwd replaces the
	// first; the last key cannot go.
	t.Setenv("BULK_PASSWORD_FILE", pw)
	t.Setenv("BULK_NEW_PASSWORD_FILE", writeSecret(t, dir, "second", "second password for the ops team\n"))
	ok(t, "key", "add", "-r", repo, "--work-factor", "10", "--label", "second")
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	ok(t, "key", "add", "-r", repo, "--recipient", id.Recipient().String(), "--label", "admin")
	var keys []keyEntry
	if err := json.Unmarshal([]byte(ok(t, "key", "list", "-r", repo, "--json").stdout), &keys); err != nil || len(keys) != 3 {
		t.Fatalf("key list: %d keys (%v), want 3", len(keys), err)
	}
	t.Setenv("BULK_NEW_PASSWORD_FILE", writeSecret(t, dir, "rotated", "a rotated password\n"))
	ok(t, "key", "passwd", "-r", repo, "--work-factor", "10")
	fails(t, exitError, []string{"wrong password"}, "snapshots", "-r", repo)
	t.Setenv("BULK_PASSWORD_FILE", filepath.Join(dir, "rotated"))
	ok(t, "snapshots", "-r", repo)
	t.Setenv("BULK_PASSWORD_FILE", "")
	t.Setenv("BULK_IDENTITY_FILE", writeSecret(t, dir, "identity", id.String()+"\n"))
	ok(t, "verify", "latest", "-r", repo)
	for _, k := range keys {
		if k.Label == "second" {
			ok(t, "key", "remove", k.ID, "-r", repo)
		}
	}
	t.Setenv("BULK_IDENTITY_FILE", "")
	t.Setenv("BULK_PASSWORD_FILE", filepath.Join(dir, "second"))
	fails(t, exitError, []string{"wrong password"}, "snapshots", "-r", repo)

	// Write keys: the coordinator's backs up and lists snapshots, the
	// workers' backs up nothing alone; neither restores nor verifies.
	t.Setenv("BULK_PASSWORD_FILE", filepath.Join(dir, "rotated"))
	coordKey, workerKey := filepath.Join(dir, "coordinator.key"), filepath.Join(dir, "worker.key")
	ok(t, "key", "write-key", "-r", repo, "--for", "coordinator", "-o", coordKey)
	ok(t, "key", "write-key", "-r", repo, "--for", "worker", "-o", workerKey)
	fails(t, exitError, []string{"never overwrites"}, "key", "write-key", "-r", repo, "--for", "worker", "-o", workerKey)
	if fi, err := os.Stat(coordKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("write key file %v, %v; want mode 0600", fi, err)
	}
	t.Setenv("BULK_PASSWORD_FILE", "")
	t.Setenv("BULK_WRITE_KEY_FILE", coordKey)
	backup(t, vol, repo, "--chunk-size", "256KiB")
	ok(t, "snapshots", "-r", repo)
	fails(t, exitError, []string{"encrypted", "BULK_PASSWORD_FILE"}, "restore", "latest", filepath.Join(dir, "wk.img"), "-r", repo)
	fails(t, exitError, []string{"encrypted", "BULK_PASSWORD_FILE"}, "verify", "latest", "-r", repo)
	noFile(t, filepath.Join(dir, "wk.img"))
	t.Setenv("BULK_WRITE_KEY_FILE", workerKey)
	fails(t, exitError, []string{"worker's write key", "--for coordinator"}, "backup", vol, "-r", repo)
	fails(t, exitError, []string{"encrypted"}, "snapshots", "-r", repo)

	// A damaged chunk is named by verify and never restored.
	t.Setenv("BULK_WRITE_KEY_FILE", "")
	t.Setenv("BULK_PASSWORD_FILE", filepath.Join(dir, "rotated"))
	snap := loadEncryptedSnapshot(t, repo, first.SnapshotID)
	var hash string
	for _, c := range snap.Chunks {
		if !c.Zero {
			hash = c.Hash
			break
		}
	}
	corruptChunk(t, repo, hash)
	r = bulkctl(t, "verify", first.SnapshotID, "-r", repo)
	if r.code != exitError || !strings.Contains(r.stdout+r.stderr, hash) {
		t.Errorf("verify of a tampered chunk: exit %d, output does not name %s:\n%s%s", r.code, hash, r.stdout, r.stderr)
	}
	fails(t, exitError, []string{hash}, "restore", first.SnapshotID, filepath.Join(dir, "tampered.img"), "-r", repo)
	noFile(t, filepath.Join(dir, "tampered.img"))
	// A tampered manifest is refused; the snapshot is not read at all.
	man := filepath.Join(repo, "snapshots", first.SnapshotID)
	mdata, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	mdata[len(mdata)-5] ^= 1
	if err := os.WriteFile(man, mdata, 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, exitError, []string{first.SnapshotID, "corrupt"}, "verify", first.SnapshotID, "-r", repo)
}

// loadEncryptedSnapshot reads a snapshot of an encrypted repository with the
// password of the environment, as bulkctl does.
func loadEncryptedSnapshot(t *testing.T, repo, id string) *manifest.Snapshot {
	t.Helper()
	r, _, err := openRepo(t.Context(), &common{repo: repo}, &env{stdout: os.Stdout, stderr: os.Stderr}, needMeta)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.LoadSnapshot(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// listFiles lists the files under dir with their sizes.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, strings.TrimPrefix(p, dir)+":"+fi.ModTime().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEncryptedFleet runs the write-only fleet as processes: the
// coordinator holds a write key with metadata, the reader and the
// compressor one without; only the test's bulkctl holds the password. A
// restore's host gets the keys of its snapshot's chunks, wrapped to its
// identity; without them (a restore asked for without bulkctl's grant)
// the reader cannot open a chunk, and the job fails, naming why. The
// workers' key can neither list snapshots nor restore. A reader announcing
// a host key the client does not trust for the host gets no grant.
func TestEncryptedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	dir := t.TempDir()
	e := newFaultFleetCrypt(t, dir, "", true)
	comp := e.startCompressor(t, "comp1")
	const size = 8 * mib
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), size, 17)
	r := e.bulkctlOK(t, "backup", faultHost+":"+vol, "-r", e.repo, "--nats", e.url, "--json", "--chunk-size", "1MiB")
	var res backupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}

	// The client trusts the reader's key on first use, and records it.
	out := filepath.Join(dir, "out.img")
	r = e.bulkctlOK(t, "restore", res.SnapshotID, faultHost+":"+out, "-r", e.repo, "--nats", e.url)
	sameFile(t, vol, out)
	if !strings.Contains(r.stderr, "trusting host "+faultHost) {
		t.Errorf("first restore to %s did not say it trusts the host's key:\n%s", faultHost, r.stderr)
	}
	if grants, _ := filepath.Glob(filepath.Join(e.repo, repository.GrantsPrefix, "*")); len(grants) != 0 {
		t.Errorf("grants left in the repository after the restore: %v", grants)
	}

	// What a compressor holds opens nothing.
	workerEnv := procEnv(e.workerEnv...)
	for _, args := range [][]string{
		{"snapshots", "-r", e.repo},
		{"restore", res.SnapshotID, filepath.Join(dir, "by-worker.img"), "-r", e.repo},
		{"verify", res.SnapshotID, "-r", e.repo},
	} {
		if r := bulkctlProcEnv(t, workerEnv, args...); r.code != exitError || !strings.Contains(r.stderr, "encrypted") {
			t.Errorf("bulkctl %s with a worker's write key: exit %d, stderr:\n%s", args[0], r.code, r.stderr)
		}
	}
	noFile(t, filepath.Join(dir, "by-worker.img"))

	// A restore asked of the coordinator directly, with no grant: the
	// coordinator plans it (it reads manifests), the reader cannot open
	// the chunks.
	jobID := newJobID()
	bare := filepath.Join(dir, "bare.img")
	req := &queue.RestoreRequest{V: queue.MessageVersion, JobID: jobID, Repo: e.repo, Snapshot: res.SnapshotID,
		Targets: []queue.Endpoint{{Host: faultHost, Path: bare}}}
	if err := queue.Submit(t.Context(), e.js, queue.SubjectRequestRestore, req, jobID); err != nil {
		t.Fatal(err)
	}
	ev := e.wait(t, jobID)
	if ev.State != queue.StateFailed || !strings.Contains(ev.Error, "grant") {
		t.Errorf("a restore without a grant ended %s: %s; want failed, naming the grant", ev.State, ev.Error)
	}
	noFile(t, bare)

	// A second reader of the host with an identity of its own: the client
	// does not wrap the restore's keys to a key it does not trust.
	other := startFaultReader(t, "reader-other", e.url, append(e.workerEnv[:1:1], "BULK_HOST_IDENTITY_FILE="+filepath.Join(dir, "other-identity")))
	deadline := time.Now().Add(30 * time.Second)
	for {
		workers, err := queue.ListWorkers(t.Context(), e.js)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, w := range workers {
			if w.Role == queue.RoleReader && w.Host == faultHost && w.Recipient != "" {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second reader did not announce its key within 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling heartbeats, not synchronisation
	}
	r = bulkctlProcEnv(t, e.clientEnv, "restore", res.SnapshotID, faultHost+":"+filepath.Join(dir, "untrusted.img"), "-r", e.repo, "--nats", e.url)
	if r.code != exitError || !strings.Contains(r.stderr, "does not list") {
		t.Errorf("restore with an untrusted reader key: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	noFile(t, filepath.Join(dir, "untrusted.img"))
	stop(t, comp, other, e.reader, e.coord)
}
