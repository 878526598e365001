package main

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The in-process fleet keeps its NATS server's data in a temporary
// directory. A bulkctl that is killed cannot remove it, so each one holds an
// exclusive lock on a file in its directory for as long as it runs; the
// next bulkctl removes the directories whose lock nobody holds.
const (
	fleetDirPattern = "bulkctl-fleet-*"
	fleetLockName   = "lock"
	// unlockedGrace spares a directory without a lock file for a while: it
	// may be one a bulkctl has just created and not locked yet.
	unlockedGrace = time.Hour
)

// fleetDir is the in-process fleet's temporary directory, locked.
type fleetDir struct {
	path string
	lock *os.File
}

// newFleetDir removes the temporary directories that bulkctls that died
// left, then creates and locks one for this process.
func newFleetDir() (*fleetDir, error) {
	removeStaleFleetDirs(os.TempDir(), time.Now())
	path, err := os.MkdirTemp("", fleetDirPattern)
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(path, fleetLockName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(path)
		return nil, err
	}
	return &fleetDir{path: path, lock: lock}, nil
}

// remove deletes the directory and releases its lock.
func (d *fleetDir) remove() {
	os.RemoveAll(d.path)
	d.lock.Close()
}

// removeStaleFleetDirs removes the fleet directories under tmp whose lock
// no live process holds (the kernel drops a dead process's locks), and
// those without a lock file older than unlockedGrace.
func removeStaleFleetDirs(tmp string, now time.Time) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, fleetDirPattern))
	for _, dir := range dirs {
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
			continue // not ours to judge
		}
		lock, err := os.OpenFile(filepath.Join(dir, fleetLockName), os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			if fi, err := os.Stat(dir); err == nil && now.Sub(fi.ModTime()) > unlockedGrace {
				os.RemoveAll(dir)
			}
			continue
		}
		if err != nil {
			continue
		}
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(dir) // its bulkctl is gone
		}
		lock.Close()
	}
}
