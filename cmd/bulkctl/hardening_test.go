package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// These tests are the hardening scenarios of docs/reliability.md (issue 13):
// what a hostile repository, a planted symlink, a killed process or a full
// disk did before, tried on real processes.

// plantSnapshot commits m to the directory repository repo as it is,
// without validating it: what an attacker who can write the bucket, or a
// buggy writer, could store. It returns the snapshot's ID.
func plantSnapshot(t *testing.T, repo string, m *manifest.Snapshot) string {
	t.Helper()
	st, err := dirstore.New(repo)
	if err != nil {
		t.Fatal(err)
	}
	m.ID = repository.NewSnapshotID()
	flat := *m // planted in the flat form of manifest versions 1 to 3
	flat.Root = nil
	js := mustJSON(t, &flat)
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), repository.SnapshotsPrefix+m.ID, sealer.Seal(nil, chunk.Sum(js), js)); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadSnapshot(t *testing.T, repo, id string) *manifest.Snapshot {
	t.Helper()
	st, err := dirstore.New(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repository.Open(t.Context(), st, repository.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.LoadSnapshot(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHostileManifest: a well-sealed manifest whose extent offset is near
// the int64 maximum (so offset+length wraps negative) used to pass
// validation; verify called it OK and the restore panicked the reader
// process, leaving the job to hang. Now verify and restore both refuse it,
// naming the extent, and the reader process lives on.
func TestHostileManifest(t *testing.T) {
	e := newFaultFleet(t, t.TempDir(), "")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 20)
	good := backup(t, src, e.repo, "--chunk-size", "64KiB")
	m := loadSnapshot(t, e.repo, good.SnapshotID)
	for i := range m.Files {
		if f := &m.Files[i]; f.Type == manifest.TypeFile && len(f.Content) == 1 && f.Content[0].Length < 100 {
			f.Content[0].Offset = 1<<63 - 10
			break
		}
	}
	id := plantSnapshot(t, e.repo, m)

	r := bulkctlProc(t, "verify", id, "-r", e.repo)
	if r.code != exitError || !strings.Contains(r.stderr+r.stdout, "outside chunk") {
		t.Errorf("verify of the hostile snapshot: exit %d, want 1 naming the extent\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = bulkctlProc(t, "restore", id, "testhost:"+filepath.Join(e.dir, "out"), "-r", e.repo, "--nats", e.url)
	if r.code != exitError || !strings.Contains(r.stderr, "outside chunk") {
		t.Errorf("restore of the hostile snapshot: exit %d, want 1 naming the extent\n%s", r.code, r.stderr)
	}
	stillRunning(t, e.reader)
	if strings.Contains(e.reader.log(), "panic") {
		t.Errorf("the reader panicked:\n%s", e.reader.log())
	}
	// The good snapshot restores through the same reader.
	bulkctlProcOK(t, "restore", good.SnapshotID, "testhost:"+filepath.Join(e.dir, "good"), "-r", e.repo, "--nats", e.url)
	sameTree(t, src, filepath.Join(e.dir, "good"))
}

// TestRestoreThroughPlantedSymlink: a client that chooses the job ID makes
// the name of a volume restore's partial file predictable. A symlink
// planted there used to be followed: the restore truncated and overwrote
// the file it pointed to. Now it is replaced, and the link's target is
// untouched.
func TestRestoreThroughPlantedSymlink(t *testing.T) {
	e := newFaultFleet(t, t.TempDir(), "")
	vol := writeVolume(t, filepath.Join(e.dir, "vol.img"), 3*mib, 41)
	res := backup(t, vol, e.repo, "--chunk-size", "1MiB")
	victim := filepath.Join(e.dir, "victim")
	orig := []byte("another user's data, which the restore must not touch")
	if err := os.WriteFile(victim, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "restored.img")
	const jobID = "predictable-job"
	if err := os.Symlink(victim, out+".bulkpart-"+jobID); err != nil {
		t.Fatal(err)
	}
	req := &queue.RestoreRequest{V: queue.MessageVersion, JobID: jobID, Repo: e.repo, Snapshot: res.SnapshotID,
		Targets: []queue.Endpoint{{Host: faultHost, Path: out}}}
	if err := queue.Submit(t.Context(), e.js, queue.SubjectRequestRestore, req, jobID); err != nil {
		t.Fatal(err)
	}
	if ev := e.wait(t, jobID); ev.State != queue.StateSucceeded {
		t.Fatalf("restore ended %s: %s", ev.State, ev.Error)
	}
	sameFile(t, vol, out)
	if got, err := os.ReadFile(victim); err != nil || string(got) != string(orig) {
		t.Errorf("the symlink's target holds %q (%v), want it untouched", got, err)
	}
}

// TestRestoreFailsFast: permanent errors fail a restore at once with the
// cause, instead of being retried until the stall timeout blames the
// fleet: a tree restored onto a file or a symlink, a volume restored onto
// a directory.
func TestRestoreFailsFast(t *testing.T) {
	e := newFaultFleet(t, t.TempDir(), "", "--stall-timeout", "2m")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 5)
	tree := backup(t, src, e.repo, "--chunk-size", "64KiB")
	vol := writeVolume(t, filepath.Join(e.dir, "vol.img"), 1*mib, 43)
	image := backup(t, vol, e.repo, "--chunk-size", "1MiB")
	file := filepath.Join(e.dir, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.dir, "a-link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, snap, target, want string
	}{
		{"tree onto a file", tree.SnapshotID, file, "not a directory"},
		{"tree onto a symlink", tree.SnapshotID, link, "not a directory"},
		{"volume onto a directory", image.SnapshotID, t.TempDir(), "is a directory"},
	}
	for _, tt := range tests {
		start := time.Now()
		r := bulkctlProc(t, "restore", tt.snap, faultHost+":"+tt.target, "-r", e.repo, "--nats", e.url)
		if r.code != exitError || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "stalled") {
			t.Errorf("%s: exit %d after %s, want 1 naming the cause (%q)\n%s", tt.name, r.code, time.Since(start).Round(time.Millisecond), tt.want, r.stderr)
		}
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != "x" {
		t.Errorf("the file in the way holds %q (%v), want it untouched", got, err)
	}
}

// TestFailedRestoresLeaveNoDebris: a restore that fails on a corrupt chunk
// removes its partial files before it reports the failure, a volume's and a
// tree's; and partial files that killed restores left are removed by the
// next restore to the same place.
func TestFailedRestoresLeaveNoDebris(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	repo := plainRepo(t, filepath.Join(dir, "repo"))
	vol := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), vol, 4*mib, volgen.Options{Seed: 44, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	image := backup(t, vol, repo, "--chunk-size", "1MiB")
	src := filepath.Join(dir, "src")
	writeTree(t, src, 200)
	tree := backup(t, src, repo, "--chunk-size", "16KiB")

	// Debris of restores that were killed: a volume's and a tree's.
	out := filepath.Join(dir, "restored.img")
	for _, p := range []string{out + ".bulkpart-killed-job", filepath.Join(dir, "tree", "many", ".f0001.txt.bulkpart-0badf00d")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ok(t, "restore", image.SnapshotID, out, "-r", repo)
	ok(t, "restore", tree.SnapshotID, filepath.Join(dir, "tree"), "-r", repo, "--overwrite")
	checkNoPartials(t, dir)

	// Damage every chunk: the volume's restore fails, the tree's restores
	// no file (each is named as not restored), and both remove what they
	// wrote.
	for _, f := range chunkFiles(t, repo) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-1] ^= 0x40
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fails(t, exitError, []string{"corrupt"}, "restore", image.SnapshotID, filepath.Join(dir, "again.img"), "-r", repo)
	fails(t, exitWarnings, []string{"many/f0001.txt: not restored: chunk"}, "restore", tree.SnapshotID, filepath.Join(dir, "tree2"), "-r", repo)
	checkNoPartials(t, dir)
}

func checkNoPartials(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".bulkpart-") {
			t.Errorf("partial file left: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFullRepositoryFailsAtOnce: a directory repository that runs out of
// space used to be taken for one that is unreachable, and every chunk was
// retried for the store timeout. Now the backup fails at once, saying the
// repository is full, and what was stored before is intact.
func TestFullRepositoryFailsAtOnce(t *testing.T) {
	t.Parallel()
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=3m"); err != nil {
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatalf("cannot mount a small tmpfs as root: %v", err)
		}
		t.Skipf("cannot mount a small tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	repo := plainRepo(t, filepath.Join(mnt, "repo"))
	dir := t.TempDir()
	small := filepath.Join(dir, "small.img")
	if err := volgen.WriteFile(t.Context(), small, 256*kib, volgen.Options{Seed: 45, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	first := backup(t, small, repo, "--chunk-size", "256KiB")
	big := filepath.Join(dir, "big.img")
	if err := volgen.WriteFile(t.Context(), big, 16*mib, volgen.Options{Seed: 46, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr testenv.LogBuffer
	code := run(ctx, []string{"backup", big, "-r", repo, "--chunk-size", "1MiB", "--store-timeout", "5m"}, &stdout, &stderr)
	if code != exitError || !strings.Contains(stderr.String(), "is full") || !strings.Contains(stderr.String(), "no space left") {
		t.Errorf("backup into a full repository: exit %d, want 1 saying it is full\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "unavailable for") {
		t.Errorf("the full repository was taken for an unreachable one:\n%s", stderr.String())
	}
	ok(t, "verify", first.SnapshotID, "-r", repo)
}

// TestKilledBulkctlLeavesNoTempDir: the in-process fleet keeps its NATS
// data in a temporary directory, which a bulkctl killed outright cannot
// remove; the next bulkctl does, and leaves the directory of one that is
// running alone.
func TestKilledBulkctlLeavesNoTempDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the bulkctl binary")
	}
	tmp := t.TempDir()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), vol, faultVolumeSize(), volgen.Options{Seed: 47}); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TMPDIR="+tmp)
	p := startExeWith(t, "bulkctl", filepath.Join(testenv.Binaries(t), "bulkctl"), func(c *exec.Cmd) { c.Env = env },
		"backup", vol, "-r", plainRepo(t, filepath.Join(dir, "repo")), "--chunk-size", "256KiB")
	var leftover []string
	deadline := time.Now().Add(30 * time.Second)
	for len(leftover) == 0 && time.Now().Before(deadline) {
		leftover, _ = filepath.Glob(filepath.Join(tmp, "bulkctl-fleet-*", "jetstream"))
		time.Sleep(20 * time.Millisecond) // polling a directory
	}
	if len(leftover) == 0 {
		t.Fatal("the bulkctl under test made no fleet directory")
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if dirs, _ := filepath.Glob(filepath.Join(tmp, "bulkctl-fleet-*")); len(dirs) != 1 {
		t.Fatalf("after the kill: %q, want the killed bulkctl's directory", dirs)
	}
	// A live bulkctl's directory, as newFleetDir makes it, stays.
	live, err := os.MkdirTemp(tmp, "bulkctl-fleet-")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.Create(filepath.Join(live, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.img")
	if err := os.WriteFile(small, []byte(rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := bulkctlProcEnv(t, env, "backup", small, "-r", plainRepo(t, filepath.Join(dir, "repo2"))); r.code != 0 {
		t.Fatalf("the next bulkctl: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dirs, _ := filepath.Glob(filepath.Join(tmp, "bulkctl-fleet-*"))
	if len(dirs) != 1 || dirs[0] != live {
		t.Errorf("after the next bulkctl: %q, want only the live one %s", dirs, live)
	}
	if _, err := os.Stat(live); errors.Is(err, os.ErrNotExist) {
		t.Error("the live bulkctl's directory was removed")
	}
}

// TestVolumeChangedWhileRead: a volume written to while it is backed up
// used to give exit 0 and no word of it. Now the backup completes with a
// warning (exit 3) that says the snapshot may be inconsistent and how to
// avoid it; an unchanged volume still exits 0.
func TestVolumeChangedWhileRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), vol, 32*mib, volgen.Options{Seed: 48, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	repo := plainRepo(t, filepath.Join(dir, "repo"))
	// While the backup runs, as soon as it has stored its first chunk,
	// something writes to the volume.
	wrote := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if files, _ := filepath.Glob(filepath.Join(repo, "chunks", "*", "*")); len(files) > 0 {
				f, err := os.OpenFile(vol, os.O_WRONLY, 0)
				if err == nil {
					_, err = f.WriteAt([]byte("changed"), 5)
					f.Close()
				}
				wrote <- err
				return
			}
			time.Sleep(time.Millisecond) // polling for the first chunk
		}
		wrote <- errors.New("the backup stored no chunk within a minute")
	}()
	r := bulkctl(t, "backup", vol, "-r", repo, "--chunk-size", "64KiB")
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if r.code != exitWarnings || !strings.Contains(r.stderr, "changed while it was read") || !strings.Contains(r.stderr, "quiesce") {
		t.Errorf("backup of a volume written meanwhile: exit %d, want %d with a warning\n%s", r.code, exitWarnings, r.stderr)
	}
	if r := bulkctl(t, "backup", vol, "-r", repo, "--chunk-size", "64KiB"); r.code != exitOK {
		t.Errorf("backup of the unchanged volume: exit %d, want 0\n%s", r.code, r.stderr)
	}
}

// TestNonUTF8Names: Linux names are bytes. Files and directories whose
// names are not UTF-8 text, and a symlink whose target is not, used to be
// skipped with a warning, whole directories included; they are backed up
// and restored byte-exact, without a warning (manifest version 3).
func TestNonUTF8Names(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), plainRepo(t, filepath.Join(dir, "repo"))
	for p, data := range map[string]string{
		"plain.txt":               "plain",
		"latin1-caf\xe9.txt":      "café in Latin-1",
		"dir-\xff\xfe/inside.txt": "in a directory whose name is not text",
		"dir-\xff\xfe/\x80\x81":   "neither is mine",
	} {
		p = filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("dir-\xff\xfe/\x80\x81", filepath.Join(src, "link-\xfa")); err != nil {
		t.Fatal(err)
	}
	r := ok(t, "backup", src, "-r", repo, "--json")
	if strings.Contains(r.stderr, "skipped") {
		t.Errorf("backup skipped names:\n%s", r.stderr)
	}
	out := filepath.Join(dir, "out")
	ok(t, "restore", "latest", out, "-r", repo)
	sameTree(t, src, out)
	if got, err := os.Readlink(filepath.Join(out, "link-\xfa")); err != nil || got != "dir-\xff\xfe/\x80\x81" {
		t.Errorf("restored symlink points to %q (%v)", got, err)
	}
	// One path restores alone, named as it is on disk.
	one := filepath.Join(dir, "one")
	ok(t, "restore", "latest", one, "-r", repo, "--path", "dir-\xff\xfe")
	if data, err := os.ReadFile(filepath.Join(one, "dir-\xff\xfe", "\x80\x81")); err != nil || string(data) != "neither is mine" {
		t.Errorf("--path restore of a directory not named in text: %q, %v", data, err)
	}
}
