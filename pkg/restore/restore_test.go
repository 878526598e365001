package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/restore"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
)

const (
	chunkSize = 64 << 10
	nChunks   = 64
	volSize   = nChunks*chunkSize - 1000 // the last chunk is short
)

// dataChunks are the indexes of the volume's non-zero chunks; every other
// chunk is zeros, so the volume is mostly holes.
var dataChunks = map[int]bool{0: true, 9: true, 10: true, nChunks - 1: true}

type testBundle struct {
	repo     *repository.Repository
	repoRoot string
	dir      string          // where targets go
	want     []byte          // the volume
	chunks   []restore.Chunk // every chunk, zero ones included
}

// newRepo creates a directory repository and a sealer to fill it with,
// returning the repository's directory too.
func newRepo(t testing.TB) (*repository.Repository, *chunk.Sealer, string) {
	t.Helper()
	root := t.TempDir()
	st, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(t.Context(), st, repository.OpenOptions{CreatePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	return repo, sealer, root
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	repo, sealer, root := newRepo(t)
	b := &testBundle{repo: repo, repoRoot: root, dir: t.TempDir(), want: make([]byte, volSize)}
	for i := range nChunks {
		off := int64(i) * chunkSize
		c := restore.Chunk{Offset: off, Length: min(chunkSize, volSize-off)}
		raw := b.want[off : off+c.Length]
		if !dataChunks[i] {
			c.Zero = true
			b.chunks = append(b.chunks, c)
			continue
		}
		for j := range raw {
			raw[j] = byte(i*7 + j*j%251 + 1)
		}
		c.ID = chunk.Sum(raw)
		if err := repo.PutChunk(t.Context(), c.ID, sealer.Seal(nil, c.ID, raw)); err != nil {
			t.Fatal(err)
		}
		b.chunks = append(b.chunks, c)
	}
	return b
}

func (b *testBundle) target(name string) restore.Target {
	return restore.Target{Path: filepath.Join(b.dir, name), JobID: "job-1", Size: volSize}
}

// partial is the file a file target is written to before Finish, as the
// package documents: PATH.bulkpart-JOB.
func partial(tg restore.Target) string { return tg.Path + ".bulkpart-" + tg.JobID }

// write writes the chunks of a file target, skipping zero chunks as the
// coordinator does for files: Prepare left them as holes.
func (b *testBundle) write(t *testing.T, v *restore.Volume, chunks []restore.Chunk) {
	t.Helper()
	var buf []byte
	for _, c := range chunks {
		if c.Zero {
			continue
		}
		var err error
		if buf, err = v.WriteChunk(t.Context(), b.repo, c, buf); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *testBundle) corrupt(t *testing.T, id chunk.ID) {
	t.Helper()
	path := filepath.Join(b.repoRoot, filepath.FromSlash(repository.ChunkKey(id)))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func prepare(t *testing.T, tg restore.Target) *restore.Volume {
	t.Helper()
	v, err := restore.Prepare(tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	if v.Device() {
		t.Fatalf("Prepare(%s) reports a device", tg.Path)
	}
	return v
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d expected", path, len(got), len(want))
	}
}

func checkMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (Lstat err = %v)", path, err)
	}
}

func TestRestoreFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	checkMissing(t, tg.Path) // nothing at the target before Finish
	b.write(t, v, b.chunks)
	restoreFile(t, b, tg)
}

// TestRestoreFileDirect restores from an aligned buffer, as the reader
// does: the chunks are written directly (O_DIRECT), except the short last
// one, which goes through the page cache.
func TestRestoreFileDirect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	buf := directio.Alloc(chunkSize)[:0]
	for _, c := range b.chunks {
		if c.Zero {
			continue
		}
		var err error
		if buf, err = v.WriteChunk(t.Context(), b.repo, c, buf[:0]); err != nil {
			t.Fatal(err)
		}
		if want := c.Length%directio.Align == 0; directio.Aligned(buf, c.Offset) != want {
			t.Fatalf("chunk at %d: aligned %v after WriteChunk, want %v (the buffer was reallocated)", c.Offset, !want, want)
		}
	}
	restoreFile(t, b, tg)
}

// restoreFile finishes a file target whose chunks are written and checks
// the result.
func restoreFile(t *testing.T, b *testBundle, tg restore.Target) {
	t.Helper()
	if err := restore.Finish(tg); err != nil {
		t.Fatal(err)
	}
	checkFile(t, tg.Path, b.want)
	checkMissing(t, partial(tg))

	// Zero chunks stay holes: only the data chunks take disk blocks.
	fi, err := os.Stat(tg.Path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := fi.Sys().(*syscall.Stat_t).Blocks // 512-byte units
	if full := int64(volSize / 512); blocks >= full/2 {
		t.Errorf("restored file takes %d blocks of 512 bytes, want far fewer than the %d a full file takes", blocks, full)
	}

	// Finish again finds the work done.
	if err := restore.Finish(tg); err != nil {
		t.Fatalf("second Finish: %v", err)
	}
	checkFile(t, tg.Path, b.want)
}

func TestPrepareTwice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	b.write(t, v, b.chunks[:20])
	v = prepare(t, tg) // a redelivered prepare must not truncate what was written
	b.write(t, v, b.chunks[20:])
	if err := restore.Finish(tg); err != nil {
		t.Fatal(err)
	}
	checkFile(t, tg.Path, b.want)
}

func TestOverwrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	old := []byte("existing data, keep me")
	if err := os.WriteFile(tg.Path, old, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := restore.Prepare(tg)
	if !errors.Is(err, restore.ErrExists) {
		t.Fatalf("Prepare over an existing file: err = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), tg.Path) {
		t.Errorf("error %q does not name %s", err, tg.Path)
	}
	checkFile(t, tg.Path, old)
	checkMissing(t, partial(tg))

	tg.Overwrite = true
	v := prepare(t, tg)
	b.write(t, v, b.chunks)
	checkFile(t, tg.Path, old) // replaced only by Finish
	if err := restore.Finish(tg); err != nil {
		t.Fatal(err)
	}
	checkFile(t, tg.Path, b.want)
}

func TestFinishRefusesTargetCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	b.write(t, v, b.chunks)
	old := []byte("created while the restore ran")
	if err := os.WriteFile(tg.Path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := restore.Finish(tg); !errors.Is(err, restore.ErrExists) {
		t.Fatalf("Finish: err = %v, want ErrExists", err)
	}
	checkFile(t, tg.Path, old)
}

func TestPrepareBadTarget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := os.Mkdir(filepath.Join(b.dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(b.dir, "missing", "deeper")
	tests := []struct {
		name    string
		path    string
		wantMsg string
	}{
		{"directory", filepath.Join(b.dir, "adir"), "directory"},
		{"directory with overwrite", filepath.Join(b.dir, "adir"), "directory"},
		{"missing parent", filepath.Join(missingDir, "vol.img"), missingDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := restore.Target{Path: tt.path, JobID: "job-1", Size: volSize, Overwrite: strings.Contains(tt.name, "overwrite")}
			_, err := restore.Prepare(tg)
			if err == nil {
				t.Fatalf("Prepare(%s) succeeded", tt.path)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Prepare(%s): err = %q, want it to mention %q", tt.path, err, tt.wantMsg)
			}
			checkMissing(t, partial(tg))
		})
	}
	if fi, err := os.Stat(filepath.Join(b.dir, "adir")); err != nil || !fi.IsDir() {
		t.Errorf("directory target was harmed: %v, %v", fi, err)
	}
}

func TestCorruptChunkNotWritten(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := b.chunks[10]
	b.corrupt(t, bad.ID)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	b.write(t, v, b.chunks[:10])

	_, err := v.WriteChunk(t.Context(), b.repo, bad, nil)
	if !errors.Is(err, chunk.ErrCorrupt) {
		t.Fatalf("WriteChunk of a corrupt chunk: err = %v, want chunk.ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), bad.ID.String()) {
		t.Errorf("error %q does not name chunk %s", err, bad.ID)
	}
	got, err := os.ReadFile(partial(tg))
	if err != nil {
		t.Fatal(err)
	}
	if !chunk.IsZero(got[bad.Offset : bad.Offset+bad.Length]) {
		t.Error("bytes of a corrupt chunk were written")
	}
	checkMissing(t, tg.Path)

	if err := restore.Abort(tg); err != nil {
		t.Fatal(err)
	}
	checkMissing(t, partial(tg))
	checkMissing(t, tg.Path)
	if err := restore.Abort(tg); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
}

func TestWriteChunkWrongLength(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	c := b.chunks[0]
	c.Length--
	if _, err := v.WriteChunk(t.Context(), b.repo, c, nil); err == nil || !strings.Contains(err.Error(), c.ID.String()) {
		t.Fatalf("WriteChunk with a length the chunk does not have: err = %v, want one naming %s", err, c.ID)
	}
	got, err := os.ReadFile(partial(tg))
	if err != nil {
		t.Fatal(err)
	}
	if !chunk.IsZero(got) {
		t.Error("a chunk of the wrong length was written")
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	v := prepare(t, tg)
	b.write(t, v, b.chunks[:5])
	if _, err := os.Stat(partial(tg)); err != nil {
		t.Fatal(err)
	}
	if err := restore.Abort(tg); err != nil {
		t.Fatal(err)
	}
	checkMissing(t, partial(tg))
	checkMissing(t, tg.Path)
	if err := restore.Finish(tg); err == nil {
		t.Error("Finish after Abort succeeded")
	}
	checkMissing(t, tg.Path)
}

// TestPrepareSymlinkPlanted: a symlink planted where the partial file of a
// restore goes (its name is predictable) is never followed: Prepare replaces
// it, what it points to is untouched, and a swap after Prepare is refused
// by Finish rather than moved into place.
func TestPrepareSymlinkPlanted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	victim := filepath.Join(t.TempDir(), "victim")
	orig := []byte("someone else's file")
	if err := os.WriteFile(victim, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	tg := b.target("vol.img")
	if err := os.Symlink(victim, partial(tg)); err != nil {
		t.Fatal(err)
	}
	v := prepare(t, tg)
	b.write(t, v, b.chunks)
	checkFile(t, victim, orig)
	if fi, err := os.Lstat(partial(tg)); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("partial file after Prepare: %v, %v; want a regular file", fi, err)
	}

	// Swapped for a symlink after Prepare: writes go to the file Prepare
	// opened, and Finish refuses to move the link into place.
	if err := os.Remove(partial(tg)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, partial(tg)); err != nil {
		t.Fatal(err)
	}
	b.write(t, v, b.chunks[:3])
	if err := v.Finish(); !errors.Is(err, restore.ErrUnsafePath) {
		t.Fatalf("Finish after the partial file was swapped = %v, want ErrUnsafePath", err)
	}
	checkFile(t, victim, orig)
	checkMissing(t, tg.Path)
	// Another process opening the target by name refuses the link too.
	if _, err := restore.OpenVolume(tg); err == nil {
		t.Fatal("OpenVolume through a planted symlink succeeded")
	}
	checkFile(t, victim, orig)
}

// TestPrepareSweepsDebris: partial files that restores of other jobs left
// beside the target (killed before they could remove them) are removed by
// the next Prepare, but for those of jobs still running (Keep), and for
// files that are not partial files of this target.
func TestPrepareSweepsDebris(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tg := b.target("vol.img")
	for _, name := range []string{"vol.img.bulkpart-dead-1", "vol.img.bulkpart-dead-2", "vol.img.bulkpart-running", "other.img.bulkpart-x", "vol.img.keep"} {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte("left"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tg.Keep = []string{"running"}
	prepare(t, tg)
	names, err := os.ReadDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range names {
		got = append(got, n.Name())
	}
	want := []string{"other.img.bulkpart-x", "vol.img.bulkpart-job-1", "vol.img.bulkpart-running", "vol.img.keep"}
	if !slices.Equal(got, want) {
		t.Errorf("after Prepare the directory holds %q, want %q", got, want)
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"corrupt chunk", fmt.Errorf("restore: %w", &chunk.CorruptError{Reason: "x"}), true},
		{"missing chunk", fmt.Errorf("get: %w", store.ErrNotFound), true},
		{"refused credentials", fmt.Errorf("get: %w", store.ErrAccessDenied), true},
		{"target exists", fmt.Errorf("prepare: %w", restore.ErrExists), true},
		{"target not a directory", fmt.Errorf("x: %w", restore.ErrNotDir), true},
		{"disk full", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, true},
		{"file too large", &os.PathError{Op: "truncate", Path: "/x", Err: syscall.EFBIG}, true},
		{"read-only file system", &os.PathError{Op: "open", Path: "/x", Err: syscall.EROFS}, true},
		{"repository refused the connection", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{"timeout", context.DeadlineExceeded, false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"unknown", errors.New("something"), false},
	}
	for _, tt := range tests {
		if got := restore.Permanent(tt.err); got != tt.want {
			t.Errorf("%s: Permanent(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestRestoreFileMode: a file target gets the source image's mode when it
// is moved into place, whether the process that prepared it finishes it
// or another does; without a recorded mode (older snapshots) it keeps the
// partial file's 0600.
func TestRestoreFileMode(t *testing.T) {
	t.Parallel()
	mode := func(m uint32) *uint32 { return &m }
	tests := []struct {
		name    string
		mode    *uint32
		reopen  bool // finished by a process that did not prepare it
		want    os.FileMode
		special os.FileMode
	}{
		{name: "recorded", mode: mode(0o644), want: 0o644},
		{name: "recorded, finished elsewhere", mode: mode(0o640), reopen: true, want: 0o640},
		{name: "setgid", mode: mode(0o2750), want: 0o750, special: os.ModeSetgid},
		{name: "none recorded", want: 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tg := b.target("vol.img")
			tg.Mode = tt.mode
			v := prepare(t, tg)
			b.write(t, v, b.chunks)
			if tt.reopen {
				v.Close()
				if err := restore.Finish(tg); err != nil {
					t.Fatal(err)
				}
			} else if err := v.Finish(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(tg.Path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.want || fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != tt.special {
				t.Errorf("restored file's mode %v, want %v%v", fi.Mode(), tt.special, tt.want)
			}
			checkFile(t, tg.Path, b.want)
		})
	}
}
