package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// These tests drive bulkctl end to end through run, in-process: every
// command starts the whole fleet (embedded NATS, coordinator, reader,
// compressors) exactly as the binary does without --nats.

const (
	kib = 1 << 10
	mib = 1 << 20
)

// result is what one bulkctl invocation did.
type result struct {
	code           int
	stdout, stderr string
}

// bulkctl runs the command line args in-process.
func bulkctl(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr testenv.LogBuffer
	code := run(t.Context(), args, &stdout, &stderr)
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("bulkctl %s: exit %d", strings.Join(args, " "), code)
	return r
}

// ok runs args and fails the test unless bulkctl exits 0.
func ok(t *testing.T, args ...string) result {
	t.Helper()
	r := bulkctl(t, args...)
	if r.code != exitOK {
		t.Fatalf("bulkctl %s: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs args and fails the test unless bulkctl exits with code and
// stderr contains every one of want.
func fails(t *testing.T, code int, want []string, args ...string) result {
	t.Helper()
	r := bulkctl(t, args...)
	if r.code != code {
		t.Errorf("bulkctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
		return r
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("bulkctl %s: stderr does not mention %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

// backup runs `backup vol -r repo --json` with extra flags and decodes the
// result.
func backup(t *testing.T, vol, repo string, flags ...string) backupResult {
	t.Helper()
	r := ok(t, append([]string{"backup", vol, "-r", repo, "--json"}, flags...)...)
	var res backupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("backup --json output %q: %v", r.stdout, err)
	}
	return res
}

// writeVolume writes a mixed-content volume (text, binary, zeros, random)
// of size bytes and returns its path.
func writeVolume(t *testing.T, path string, size int64, seed int64) string {
	t.Helper()
	if err := volgen.WriteFile(t.Context(), path, size, volgen.Options{Seed: seed}); err != nil {
		t.Fatal(err)
	}
	return path
}

// sameFile fails the test unless the files at want and got hold the same
// bytes.
func sameFile(t *testing.T, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("restored file: %v", err)
	}
	if len(a) != len(b) {
		t.Fatalf("%s holds %d bytes, want %d (as %s)", got, len(b), len(a), want)
	}
	if !bytes.Equal(a, b) {
		i := 0
		for a[i] == b[i] {
			i++
		}
		t.Fatalf("%s differs from %s at byte %d", got, want, i)
	}
}

func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s exists, want it not created", path)
	} else if !os.IsNotExist(err) {
		t.Error(err)
	}
}

var snapshotIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestBackupRestoreVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const size = 20 * mib
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), size, 1)
	repo := filepath.Join(dir, "repo")

	first := backup(t, vol, repo, "--chunk-size", "1MiB")
	t.Logf("first backup: %+v", first)
	if !snapshotIDRE.MatchString(first.SnapshotID) {
		t.Errorf("snapshot_id %q, want 32 hex digits", first.SnapshotID)
	}
	if first.SourceBytes != size {
		t.Errorf("source_bytes %d, want %d", first.SourceBytes, size)
	}
	if first.Chunks != size/mib {
		t.Errorf("chunks %d, want %d", first.Chunks, size/mib)
	}
	if first.ZeroChunks < 0 || first.ZeroChunks >= first.Chunks {
		t.Errorf("zero_chunks %d of %d chunks", first.ZeroChunks, first.Chunks)
	}
	if first.NewChunks != first.Chunks-first.ZeroChunks {
		t.Errorf("new_chunks %d, want every non-zero chunk (%d)", first.NewChunks, first.Chunks-first.ZeroChunks)
	}
	// Mixed content compresses and zeros are not stored.
	if first.StoredBytes <= 0 || first.StoredBytes >= first.SourceBytes {
		t.Errorf("stored_bytes %d, want between 0 and source_bytes %d", first.StoredBytes, first.SourceBytes)
	}
	if first.NewBytes != first.StoredBytes {
		t.Errorf("new_bytes %d, want stored_bytes %d in a new repository", first.NewBytes, first.StoredBytes)
	}
	if first.Seconds <= 0 || first.Seconds > 60 {
		t.Errorf("seconds %v", first.Seconds)
	}
	if first.JobID == "" || !strings.HasSuffix(first.Source, ":"+vol) {
		t.Errorf("job_id %q source %q, want a job ID and HOST:%s", first.JobID, first.Source, vol)
	}

	t.Run("snapshots", func(t *testing.T) {
		r := ok(t, "snapshots", "-r", repo, "--json")
		var list []snapshotEntry
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("snapshots --json output %q: %v", r.stdout, err)
		}
		if len(list) != 1 {
			t.Fatalf("snapshots lists %d snapshots, want 1: %+v", len(list), list)
		}
		s := list[0]
		if s.ID != first.SnapshotID || s.Path != vol || s.Size != size || s.Chunks != first.Chunks || s.ChunkSize != mib || s.Mode != "volume" {
			t.Errorf("snapshots lists %+v, want ID %s of %s, %d bytes in %d chunks of 1MiB, volume mode", s, first.SnapshotID, vol, size, first.Chunks)
		}
		r = ok(t, "snapshots", "-r", repo)
		if !strings.Contains(r.stdout, first.SnapshotID) || !strings.Contains(r.stdout, "\n1 snapshot\n") {
			t.Errorf("snapshots table does not list %s:\n%s", first.SnapshotID, r.stdout)
		}
	})

	t.Run("restore by prefix", func(t *testing.T) {
		out := filepath.Join(dir, "by-prefix.img")
		r := ok(t, "restore", first.SnapshotID[:8], out, "-r", repo)
		if !strings.Contains(r.stdout, first.SnapshotID) {
			t.Errorf("restore output does not name snapshot %s:\n%s", first.SnapshotID, r.stdout)
		}
		sameFile(t, vol, out)
	})

	t.Run("restore latest", func(t *testing.T) {
		out := filepath.Join(dir, "latest.img")
		ok(t, "restore", "latest", out, "-r", repo)
		sameFile(t, vol, out)
	})

	t.Run("restore onto existing file", func(t *testing.T) {
		out := filepath.Join(dir, "existing.img")
		const keep = "precious data that must survive\n"
		if err := os.WriteFile(out, []byte(keep), 0o644); err != nil {
			t.Fatal(err)
		}
		fails(t, exitError, []string{"--overwrite", out}, "restore", "latest", out, "-r", repo)
		if got, err := os.ReadFile(out); err != nil || string(got) != keep {
			t.Fatalf("existing file changed by a refused restore: %q, %v", got, err)
		}
		ok(t, "restore", "latest", out, "-r", repo, "--overwrite")
		sameFile(t, vol, out)
	})

	t.Run("verify", func(t *testing.T) {
		r := ok(t, "verify", "latest", "-r", repo, "--compare", vol)
		if !strings.Contains(r.stdout, "OK") || !strings.Contains(r.stdout, first.SnapshotID) {
			t.Errorf("verify output:\n%s", r.stdout)
		}
		r = ok(t, "verify", first.SnapshotID, "-r", repo, "--json")
		var res verifyResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("verify --json output %q: %v", r.stdout, err)
		}
		if !res.OK || res.Chunks != first.Chunks || res.Bytes != size || len(res.Damaged) != 0 {
			t.Errorf("verify --json: %+v", res)
		}
	})

	t.Run("second backup is incremental", func(t *testing.T) {
		second := backup(t, vol, repo, "--chunk-size", "1MiB")
		t.Logf("second backup: %+v", second)
		if second.SnapshotID == first.SnapshotID || !snapshotIDRE.MatchString(second.SnapshotID) {
			t.Errorf("second snapshot_id %q, want a new ID (first %s)", second.SnapshotID, first.SnapshotID)
		}
		if second.NewBytes != 0 || second.NewChunks != 0 {
			t.Errorf("second backup of an unchanged volume stored %d new bytes in %d chunks, want 0", second.NewBytes, second.NewChunks)
		}
		if second.SourceBytes != size || second.Chunks != first.Chunks || second.StoredBytes != first.StoredBytes {
			t.Errorf("second backup %+v, want the same volume as %+v", second, first)
		}
		r := ok(t, "snapshots", "-r", repo, "--json")
		var list []snapshotEntry
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Errorf("snapshots lists %d snapshots, want 2", len(list))
		}
		r = ok(t, "verify", "latest", "-r", repo, "--compare", vol)
		if !strings.Contains(r.stdout, second.SnapshotID) {
			t.Errorf("verify latest checked another snapshot than %s:\n%s", second.SnapshotID, r.stdout)
		}
	})
}

func TestVolumeSizes(t *testing.T) {
	t.Parallel()
	const chunk = 64 * kib
	tests := []struct {
		name       string
		size       int64
		zeros      bool // an all-zero (sparse) volume instead of mixed content
		wantChunks int
	}{
		{name: "empty", size: 0, wantChunks: 0},
		{name: "one byte", size: 1, wantChunks: 1},
		{name: "two chunks", size: 2 * chunk, wantChunks: 2},
		{name: "two chunks and a byte", size: 2*chunk + 1, wantChunks: 3},
		{name: "all zeros", size: 2*chunk + 1, zeros: true, wantChunks: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			vol := filepath.Join(dir, "vol.img")
			if tt.zeros {
				if err := os.WriteFile(vol, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(vol, tt.size); err != nil {
					t.Fatal(err)
				}
			} else {
				writeVolume(t, vol, tt.size, 7)
			}
			repo := filepath.Join(dir, "repo")
			res := backup(t, vol, repo, "--chunk-size", "64KiB")
			if res.SourceBytes != tt.size || res.Chunks != tt.wantChunks {
				t.Errorf("backup: %d bytes in %d chunks, want %d in %d", res.SourceBytes, res.Chunks, tt.size, tt.wantChunks)
			}
			if tt.zeros && (res.ZeroChunks != tt.wantChunks || res.StoredBytes != 0) {
				t.Errorf("all-zero volume: %d zero chunks, %d bytes stored; want %d and 0", res.ZeroChunks, res.StoredBytes, tt.wantChunks)
			}
			out := filepath.Join(dir, "out.img")
			ok(t, "restore", res.SnapshotID, out, "-r", repo)
			sameFile(t, vol, out)
			ok(t, "verify", "latest", "-r", repo, "--compare", vol)
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 256*kib, 3)
	repo := filepath.Join(dir, "repo")
	plainFile := filepath.Join(dir, "plain")
	if err := os.WriteFile(plainFile, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "no-such-volume.img")

	tests := []struct {
		name string
		args []string
		code int
		want []string // each must appear in stderr
		// noFile, if set, must not exist afterwards.
		noFile string
	}{
		{
			name: "jobs without a coordinator",
			args: []string{"jobs"},
			code: exitUsage, want: []string{"--nats"},
		},
		{
			name: "history without HOST:PATH",
			args: []string{"history", "/srv/vol", "--nats", "nats://127.0.0.1:1"},
			code: exitUsage, want: []string{"HOST:PATH"},
		},
		{
			name: "missing source",
			args: []string{"backup", missing, "-r", repo},
			code: exitError, want: []string{missing, "no such file"},
		},
		{
			name: "directory source in volume mode",
			args: []string{"backup", dir, "-r", repo, "--mode", "volume"},
			code: exitError, want: []string{dir, "directory", "volume mode", "--mode files"},
		},
		{
			name: "repository under a regular file",
			args: []string{"backup", vol, "-r", filepath.Join(plainFile, "repo")},
			code: exitError, want: []string{plainFile, "not a directory"},
		},
		{
			name: "repository missing for snapshots",
			args: []string{"snapshots", "-r", filepath.Join(dir, "no-repo")},
			code: exitError, want: []string{filepath.Join(dir, "no-repo")},
			noFile: filepath.Join(dir, "no-repo"),
		},
		{
			name: "repository missing for restore",
			args: []string{"restore", "latest", filepath.Join(dir, "out-norepo"), "-r", filepath.Join(dir, "no-repo2")},
			code: exitError, want: []string{filepath.Join(dir, "no-repo2")},
			noFile: filepath.Join(dir, "out-norepo"),
		},
		{
			name: "chunk size not a multiple of 4KiB",
			args: []string{"backup", vol, "-r", repo, "--chunk-size", "1000"},
			code: exitUsage, want: []string{"--chunk-size", "4096"},
		},
		{
			name: "chunk size not a size",
			args: []string{"backup", vol, "-r", repo, "--chunk-size", "lots"},
			code: exitUsage, want: []string{"chunk-size", "lots"},
		},
		{
			name: "bad level",
			args: []string{"backup", vol, "-r", repo, "--level", "ludicrous"},
			code: exitUsage, want: []string{"--level", "ludicrous"},
		},
		{
			name: "unknown flag",
			args: []string{"backup", vol, "-r", repo, "--frobnicate"},
			code: exitUsage, want: []string{"frobnicate"},
		},
		{
			name: "two sources",
			args: []string{"backup", vol, vol, "-r", repo},
			code: exitUsage, want: []string{"one SOURCE"},
		},
		{
			name: "restore without target",
			args: []string{"restore", "latest", "-r", repo},
			code: exitUsage, want: []string{"TARGET"},
		},
		{
			name: "verify without snapshot",
			args: []string{"verify", "-r", repo},
			code: exitUsage, want: []string{"SNAPSHOT"},
		},
		{
			name: "unknown command",
			args: []string{"frobnicate", "-r", repo},
			code: exitUsage, want: []string{`unknown command "frobnicate"`, "bulkctl help"},
		},
		{
			name: "no command",
			args: nil,
			code: exitUsage, want: []string{"Usage:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fails(t, tt.code, tt.want, tt.args...)
			if tt.noFile != "" {
				noFile(t, tt.noFile)
			}
		})
	}
}

func TestSnapshotReferences(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 64*kib, 5)
	repo := filepath.Join(dir, "repo")

	// Back up until two snapshot IDs share their first digit, so that digit
	// is an ambiguous prefix; 17 snapshots guarantee it, about 5 are
	// expected.
	byFirst := make(map[byte][]string)
	var ambiguous string
	for i := 0; i < 17 && ambiguous == ""; i++ {
		id := backup(t, vol, repo, "--chunk-size", "64KiB").SnapshotID
		byFirst[id[0]] = append(byFirst[id[0]], id)
		if len(byFirst[id[0]]) == 2 {
			ambiguous = id[:1]
		}
	}
	if ambiguous == "" {
		t.Fatal("17 snapshots and no two IDs share a first digit")
	}
	var unknownPrefix string
	for _, c := range []byte("0123456789abcdef") {
		if len(byFirst[c]) == 0 {
			unknownPrefix = string(c)
			break
		}
	}
	unknownID := strings.Repeat("f", 32)
	if len(byFirst['f']) > 0 {
		unknownID = strings.Repeat("0", 32)
	}

	tests := []struct {
		name string
		ref  string
		want []string
	}{
		{name: "unknown ID", ref: unknownID, want: []string{unknownID, "not found"}},
		{name: "ambiguous prefix", ref: ambiguous, want: []string{`"` + ambiguous + `"`, "matches 2 snapshots", "ambiguous"}},
		{name: "unknown prefix", ref: unknownPrefix, want: []string{`"` + unknownPrefix + `"`, "not found"}},
		{name: "not an ID", ref: "../../etc", want: []string{"not found"}},
	}
	for _, tt := range tests {
		if tt.ref == "" { // every digit starts an ID: no unknown prefix to try
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out.img")
			fails(t, exitError, tt.want, "restore", tt.ref, out, "-r", repo)
			noFile(t, out)
			fails(t, exitError, tt.want, "verify", tt.ref, "-r", repo)
		})
	}
}

func TestCorruptChunk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.img")
	// Incompressible content: every chunk is stored, none is all zeros.
	if err := volgen.WriteFile(t.Context(), vol, 4*mib, volgen.Options{Seed: 9, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	res := backup(t, vol, repo, "--chunk-size", "1MiB")
	if res.Chunks != 4 || res.NewChunks != 4 {
		t.Fatalf("backup: %d chunks, %d new; want 4 and 4", res.Chunks, res.NewChunks)
	}

	// Flip one byte in the middle of one stored chunk.
	var objects []string
	err := filepath.WalkDir(filepath.Join(repo, "chunks"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			objects = append(objects, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) != 4 {
		t.Fatalf("repository holds %d chunk objects, want 4: %q", len(objects), objects)
	}
	victim := objects[len(objects)/2]
	damaged := filepath.Base(victim) // the chunk's hash
	if _, err := hex.DecodeString(damaged); err != nil || len(damaged) != 64 {
		t.Fatalf("chunk object %s is not named by its hash", victim)
	}
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("verify", func(t *testing.T) {
		r := bulkctl(t, "verify", "latest", "-r", repo)
		if r.code != exitError {
			t.Errorf("verify of a damaged snapshot: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, exitError, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "DAMAGED") || !strings.Contains(r.stdout, damaged) {
			t.Errorf("verify stdout does not name damaged chunk %s:\n%s", damaged, r.stdout)
		}
		if strings.Count(r.stdout, "DAMAGED") != 1 {
			t.Errorf("verify reports %d damaged chunks, want 1:\n%s", strings.Count(r.stdout, "DAMAGED"), r.stdout)
		}
		if strings.Contains(r.stdout, "\nOK") {
			t.Errorf("verify says OK about a damaged snapshot:\n%s", r.stdout)
		}
		if !strings.Contains(r.stderr, "1 damaged") {
			t.Errorf("verify stderr does not summarise the damage:\n%s", r.stderr)
		}

		r = bulkctl(t, "verify", res.SnapshotID, "-r", repo, "--json")
		var vr verifyResult
		if err := json.Unmarshal([]byte(r.stdout), &vr); err != nil {
			t.Fatalf("verify --json output %q: %v", r.stdout, err)
		}
		if r.code != exitError || vr.OK || len(vr.Damaged) != 1 || len(vr.Errors) != 1 || !strings.Contains(vr.Errors[0], damaged) {
			t.Errorf("verify --json: exit %d, %+v; want exit 1 and one damaged chunk %s", r.code, vr, damaged)
		}
	})

	t.Run("restore", func(t *testing.T) {
		out := filepath.Join(dir, "restored.img")
		fails(t, exitError, []string{damaged, "corrupt"}, "restore", res.SnapshotID, out, "-r", repo)
		noFile(t, out)
		// A failed restore removes its partial file (PATH.bulkpart-JOB)
		// before it reports the failure.
		if parts, _ := filepath.Glob(out + ".bulkpart-*"); len(parts) > 0 {
			t.Errorf("partial files left by the failed restore: %q", parts)
		}
	})

	t.Run("new backup over a damaged chunk", func(t *testing.T) {
		// A new backup of the same volume finds the damaged chunk's key
		// already stored and may keep the damaged object: then verify
		// must still catch it in the new snapshot.
		again := backup(t, vol, repo, "--chunk-size", "1MiB")
		r := bulkctl(t, "verify", again.SnapshotID, "-r", repo)
		if r.code == exitOK {
			t.Logf("a new backup repaired chunk %s (stdout %s)", damaged, r.stdout)
		} else if !strings.Contains(r.stdout, damaged) {
			t.Errorf("verify of the new snapshot: exit %d without naming %s:\n%s", r.code, damaged, r.stdout)
		}
	})
}

// TestRepoFromEnv sets BULK_REPO, so it cannot run in parallel.
func TestRepoFromEnv(t *testing.T) {
	dir := t.TempDir()
	vol := writeVolume(t, filepath.Join(dir, "vol.img"), 512*kib, 11)
	repo := filepath.Join(dir, "env-repo")

	t.Setenv("BULK_REPO", "")
	fails(t, exitUsage, []string{"no repository", "-r", "BULK_REPO"}, "backup", vol)
	fails(t, exitUsage, []string{"no repository"}, "snapshots")
	noFile(t, repo)

	t.Setenv("BULK_REPO", repo)
	r := ok(t, "backup", vol, "--json", "--chunk-size", "64KiB")
	var res backupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("backup --json output %q: %v", r.stdout, err)
	}
	if _, err := os.Stat(filepath.Join(repo, "snapshots", res.SnapshotID)); err != nil {
		t.Errorf("snapshot %s not in BULK_REPO %s: %v", res.SnapshotID, repo, err)
	}
	r = ok(t, "snapshots")
	if !strings.Contains(r.stdout, res.SnapshotID) {
		t.Errorf("snapshots with BULK_REPO does not list %s:\n%s", res.SnapshotID, r.stdout)
	}
	out := filepath.Join(dir, "out.img")
	ok(t, "restore", "latest", out)
	sameFile(t, vol, out)
	ok(t, "verify", "latest", "--compare", vol)

	// -r wins over BULK_REPO.
	other := filepath.Join(dir, "flag-repo")
	ok(t, "backup", vol, "-r", other, "--chunk-size", "64KiB")
	r = ok(t, "snapshots", "--json")
	var list []snapshotEntry
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("BULK_REPO holds %d snapshots after a backup with -r elsewhere, want 1", len(list))
	}
}
