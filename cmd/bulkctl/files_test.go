package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// writeTree writes a small tree: nested files, a symlink, and n files in
// "many".
func writeTree(t *testing.T, root string, n int) {
	t.Helper()
	for i := range n {
		p := filepath.Join(root, "many", fmt.Sprintf("f%04d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat(fmt.Sprintf("line %d\n", i), i%50+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "docs/old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "docs/old/notes.txt"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("docs/old/notes.txt", filepath.Join(root, "notes")); err != nil {
		t.Fatal(err)
	}
}

// TestFilesCLI drives files mode through the command line: the mode chosen
// and why, ls, a restore of one path, an incremental backup's counts, and
// the "completed with warnings" status.
func TestFilesCLI(t *testing.T) {
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), filepath.Join(dir, "repo")
	writeTree(t, src, 40)

	r := ok(t, "backup", src, "-r", repo)
	if !strings.Contains(r.stdout, "mode    files: ") || !strings.Contains(r.stdout, "not the root of a mounted filesystem: files mode") ||
		!strings.Contains(r.stdout, "41 new, 0 changed, 0 unchanged") {
		t.Errorf("backup output does not say files mode, why, and the file counts:\n%s", r.stdout)
	}
	fails(t, exitError, []string{"files mode", "not a directory"}, "backup", filepath.Join(src, "notes"), "-r", repo, "--mode", "files")
	fails(t, exitError, []string{"volume mode", "use --mode files"}, "backup", src, "-r", repo, "--mode", "volume")
	fails(t, exitUsage, []string{"--mode"}, "backup", src, "-r", repo, "--mode", "tar")

	r = ok(t, "ls", "latest", "docs", "-r", repo)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "MODE ") || !strings.HasPrefix(lines[1], "drwxr-xr-x") || !strings.HasSuffix(lines[3], "docs/old/notes.txt") {
		t.Errorf("ls latest docs:\n%s\nwant a header, docs, docs/old, docs/old/notes.txt", r.stdout)
	}
	r = ok(t, "ls", "latest", "-r", repo, "--json")
	var entries []manifest.Entry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 46 {
		t.Errorf("ls --json: %d entries (%v), want 46", len(entries), err)
	}
	fails(t, exitError, []string{`"nope" is not in snapshot`}, "ls", "latest", "nope", "-r", repo)

	out := filepath.Join(dir, "out")
	ok(t, "restore", "latest", out, "-r", repo, "--path", "/docs/old/../old/notes.txt", "--path", "notes")
	got, err := os.ReadFile(filepath.Join(out, "docs/old/notes.txt"))
	if err != nil || string(got) != "notes\n" {
		t.Errorf("restored notes.txt: %q, %v", got, err)
	}
	if target, err := os.Readlink(filepath.Join(out, "notes")); err != nil || target != "docs/old/notes.txt" {
		t.Errorf("restored symlink: %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(out, "many")); !os.IsNotExist(err) {
		t.Errorf("many/ was restored though not selected (%v)", err)
	}
	fails(t, exitError, []string{"--path selects files"}, "restore", "latest", filepath.Join(dir, "x"), "-r", writeVolumeRepo(t, dir), "--path", "a")

	// Change one file and add one; the next backup says so.
	if err := os.WriteFile(filepath.Join(src, "many/f0003.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "added.txt"), []byte("added\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := backup(t, src, repo)
	if res.Mode != "files" || res.NewFiles != 1 || res.ChangedFiles != 1 || res.UnchangedFiles != 40 || res.ReadBytes != 14 {
		t.Errorf("incremental backup: %+v, want 1 new, 1 changed, 40 unchanged, 14 bytes read", res)
	}

	// A FIFO is skipped with a warning: exit status 3, the snapshot saved.
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = fails(t, exitWarnings, []string{"warnings (1)", "pipe: FIFO skipped", "saved with 1 warning ("}, "backup", src, "-r", repo)
	if !strings.Contains(r.stdout, "snapshot ") {
		t.Errorf("backup with warnings did not report its snapshot:\n%s", r.stdout)
	}
}

// writeVolumeRepo backs up a small volume into a fresh repository and
// returns the repository.
func writeVolumeRepo(t *testing.T, dir string) string {
	t.Helper()
	repo := filepath.Join(dir, "volrepo")
	backup(t, writeVolume(t, filepath.Join(dir, "small.img"), 1<<20, 3), repo)
	return repo
}

// TestProcessFilesUnreadable runs the reader as an unprivileged user (the
// test runs as root) over a tree holding a file and a directory only root
// may read: the backup completes with exit status 3 naming both, and the
// rest restores.
func TestProcessFilesUnreadable(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the reader as another user; pkg/fleet's TestFilesChangingAndUnreadable covers mode-000 files for non-root runs")
	}
	bin := testenv.Binaries(t)
	// Everything the unprivileged reader needs lies in a world-readable
	// directory: its binary and the tree.
	shared, err := os.MkdirTemp("", "bulkctl-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	readerBin := filepath.Join(shared, "reader")
	if out, err := exec.Command("cp", filepath.Join(bin, "reader"), readerBin).CombinedOutput(); err != nil {
		t.Fatalf("copy reader: %v: %s", err, out)
	}
	src := filepath.Join(shared, "src")
	writeTree(t, src, 10)
	if err := os.WriteFile(filepath.Join(src, "secret"), []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "private/deeper"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(shared, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	_, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	reader := startExeWith(t, "reader", readerBin, func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}, "--nats", url, "--host", "unpriv", "--log-format", "json")
	comp := startProc(t, "compressor", "compressor", "--nats", url, "--log-format", "json")
	reader.waitLog(t, "reader serving")
	comp.waitLog(t, "compressor serving")

	repo := filepath.Join(dir, "repo")
	r := bulkctlProc(t, "backup", "unpriv:"+src, "-r", repo, "--nats", url)
	if r.code != exitWarnings {
		t.Fatalf("backup: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, exitWarnings, r.stdout, r.stderr)
	}
	for _, want := range []string{"warnings (2)", "secret: not readable", "permission denied", "private: directory not listed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("backup stderr does not mention %q:\n%s", want, r.stderr)
		}
	}
	r = bulkctlProcOK(t, "ls", "latest", "-r", repo)
	if !strings.Contains(r.stdout, "secret  [not readable") {
		t.Errorf("ls does not list the unreadable file with its warning:\n%s", r.stdout)
	}

	// The repository is root's; restore with the in-process fleet.
	r = bulkctlProc(t, "restore", "latest", filepath.Join(out, "tree"), "-r", repo)
	if r.code != exitWarnings || !strings.Contains(r.stderr, "secret: not restored") {
		t.Errorf("restore: exit %d, want %d naming the file not restored\nstderr:\n%s", r.code, exitWarnings, r.stderr)
	}
	got, err := os.ReadFile(filepath.Join(out, "tree/docs/old/notes.txt"))
	if err != nil || string(got) != "notes\n" {
		t.Errorf("restored notes.txt: %q, %v", got, err)
	}
	if _, err := os.Lstat(filepath.Join(out, "tree/secret")); !os.IsNotExist(err) {
		t.Errorf("the unread file was restored (%v)", err)
	}
}

// TestFilesAutoDevice mounts an ext4 image holding more files than the
// threshold: automatic mode backs up its block device as a volume, says
// why, and the restored volume equals the image; with a higher threshold
// the same directory goes file by file.
func TestFilesAutoDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a loop device needs root; plan.ChooseMode's table covers the decision")
	}
	dir := t.TempDir()
	content, img, mnt := filepath.Join(dir, "content"), filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	writeTree(t, content, 30)
	for _, args := range [][]string{
		{"truncate", "-s", "8M", img},
		{"mkfs.ext4", "-q", "-d", content, img},
		{"mkdir", mnt},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("mount", "-o", "loop,ro", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("this machine cannot loop-mount (%v: %s); plan.ChooseMode's table covers the decision", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})

	repo := filepath.Join(dir, "repo")
	res := backup(t, mnt, repo, "--files-threshold", "10")
	if res.Mode != "volume" || !strings.Contains(res.Reason, "more than 10 files") || !strings.Contains(res.Reason, "/dev/loop") {
		t.Fatalf("auto mode over the threshold: %q (%s), want volume through the loop device", res.Mode, res.Reason)
	}
	out := filepath.Join(dir, "restored.img")
	ok(t, "restore", res.SnapshotID, out, "-r", repo)
	// Compare with the device, not the image file: the mounted filesystem's
	// view of a few metadata blocks differs from the file's, even read-only.
	if !strings.HasPrefix(res.Device, "/dev/loop") {
		t.Fatalf("backup result names device %q, want the loop device", res.Device)
	}
	sameFile(t, res.Device, out)

	res = backup(t, mnt, repo, "--files-threshold", "1000")
	if res.Mode != "files" || !strings.Contains(res.Reason, "not more than 1000") {
		t.Errorf("auto mode under the threshold: %q (%s), want files", res.Mode, res.Reason)
	}
	res = backup(t, content, repo, "--files-threshold", "10")
	if res.Mode != "files" || !strings.Contains(res.Reason, "not the root of a mounted filesystem") {
		t.Errorf("auto mode on a plain directory over the threshold: %q (%s), want files", res.Mode, res.Reason)
	}
}
