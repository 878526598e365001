package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
)

// TestFaultRestoreNoSpace restores onto hosts whose readers cannot write
// the whole volume: one under a file size limit (RLIMIT_FSIZE, which fails
// writes with EFBIG: Go ignores the SIGXFSZ that comes with it), one onto
// a tmpfs smaller than the volume where mounting is allowed. Each restore
// exits non-zero with an error naming the cause, and leaves neither the
// target nor its partial file behind.
func TestFaultRestoreNoSpace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fleet's binaries")
	}
	testenv.Binaries(t)
	dir := t.TempDir()
	const size = 8 * mib
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), size, 4)
	if n := nonZeroChunks(t, vol, mib); n < 4 {
		t.Fatalf("only %d chunks of the volume are not all zeros; want at least 4 to fill the target", n)
	}
	repo := filepath.Join(dir, "repo")
	ok(t, "backup", vol, "-r", repo, "--chunk-size", "1MiB") // in-process fleet

	coord, url := startCoordinator(t, filepath.Join(dir, "jetstream"))
	coord.waitLog(t, "coordinator serving")
	reader := startProc(t, "reader", "reader", "--nats", url, "--host", "testhost", "--log-format", "json")
	limited := startProc(t, "reader-limited", "reader", "--nats", url, "--host", "limitedhost", "--log-format", "json")
	reader.waitLog(t, "reader serving")
	limited.waitLog(t, "reader serving")
	// Files the limited reader writes may grow to 2 MiB: a quarter of the
	// volume. (Its log file is written by it too, and stays far smaller.)
	lim := unix.Rlimit{Cur: 2 * mib, Max: 2 * mib}
	if err := unix.Prlimit(limited.cmd.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
		t.Fatalf("set the file size limit of the reader: %v", err)
	}

	// restoreFails restores onto host:target and checks the failure.
	restoreFails := func(t *testing.T, host, target string, want ...string) {
		t.Helper()
		r := bulkctlProc(t, "restore", "latest", host+":"+target, "-r", repo, "--nats", url)
		if r.code != exitError {
			t.Errorf("restore onto a full target: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, exitError, r.stdout, r.stderr)
		}
		t.Logf("stderr:\n%s", strings.TrimSpace(r.stderr))
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("restore onto a full target: stderr does not mention %q:\n%s", w, r.stderr)
			}
		}
		noFile(t, target)
		// The partial file is removed after the job has failed.
		deadline := time.Now().Add(20 * time.Second)
		for {
			parts, _ := filepath.Glob(target + ".bulkpart-*")
			if len(parts) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("partial files left behind: %v", parts)
				break
			}
			time.Sleep(50 * time.Millisecond) // the abort is asynchronous
		}
	}

	t.Run("file size limit", func(t *testing.T) {
		restoreFails(t, "limitedhost", filepath.Join(dir, "out-limited.img"), "file too large")
	})

	t.Run("full filesystem", func(t *testing.T) {
		mnt := filepath.Join(t.TempDir(), "small")
		if err := os.Mkdir(mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=2m"); err != nil {
			t.Skipf("cannot mount a small tmpfs here (%v); the file size limit case stands for it", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", mnt, err)
			}
		})
		restoreFails(t, "testhost", filepath.Join(mnt, "out.img"), "no space left on device")
	})

	// The same readers still restore where there is room.
	out := filepath.Join(dir, "out.img")
	bulkctlProcOK(t, "restore", "latest", "testhost:"+out, "-r", repo, "--nats", url)
	sameFile(t, vol, out)
	stop(t, reader, limited, coord)
}
