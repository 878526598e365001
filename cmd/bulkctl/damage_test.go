package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// chunkFiles lists the chunk objects of a directory repository, sorted,
// but for its directory objects.
func chunkFiles(t *testing.T, repo string) []string {
	t.Helper()
	trees := treeObjects(t, repo)
	var files []string
	err := filepath.WalkDir(filepath.Join(repo, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") && !trees[d.Name()] {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// treeObjects returns the IDs of the directory objects the snapshots of
// the plaintext directory repository repo are stored in, which lie among
// its chunks.
func treeObjects(t *testing.T, repo string) map[string]bool {
	t.Helper()
	st, err := dirstore.New(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repository.Open(t.Context(), st, repository.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	trees := make(map[string]bool)
	for _, s := range snaps {
		for _, tr := range s.Trees {
			trees[tr.Hash] = true
		}
	}
	return trees
}

// damage deletes the first chunk object of repo and cuts the last one short
// by a byte, and returns their hashes.
func damage(t *testing.T, repo string) (deleted, truncated string) {
	t.Helper()
	files := chunkFiles(t, repo)
	if len(files) < 2 {
		t.Fatalf("repository holds %d chunks, want at least 2", len(files))
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	last := files[len(files)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-1); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(files[0]), filepath.Base(last)
}

// TestDamageNotInherited: a backup that exits 0 names only chunks that are
// present and whole. After a stored chunk is deleted and another truncated,
// the next backup stores them again, whether it meets them as unchanged
// chunks of its parent (volume), as content to deduplicate against (a new
// source with the same data), or as unchanged files' extents (files mode);
// each new snapshot then verifies.
func TestDamageNotInherited(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.img")
	// Incompressible text and binary, no zeros: every chunk is stored.
	if err := volgen.WriteFile(t.Context(), vol, 2*mib, volgen.Options{Seed: 21, Mix: volgen.Mix{Random: 1, Text: 1}}); err != nil {
		t.Fatal(err)
	}
	verifyOK := func(t *testing.T, repo, snap string, why string) {
		t.Helper()
		if r := bulkctl(t, "verify", snap, "-r", repo); r.code != exitOK {
			t.Fatalf("%s: verify of the new snapshot: exit %d\n%s%s", why, r.code, r.stdout, r.stderr)
		}
	}

	t.Run("unchanged volume chunks", func(t *testing.T) {
		t.Parallel()
		repo := plainRepo(t, filepath.Join(t.TempDir(), "repo"))
		backup(t, vol, repo, "--chunk-size", "256KiB")
		deleted, truncated := damage(t, repo)
		again := backup(t, vol, repo, "--chunk-size", "256KiB")
		if again.NewChunks != 2 {
			t.Errorf("second backup stored %d chunks, want the 2 damaged ones (%s deleted, %s truncated)", again.NewChunks, deleted, truncated)
		}
		verifyOK(t, repo, again.SnapshotID, "unchanged chunks of the parent")
	})

	t.Run("deduplicated chunks", func(t *testing.T) {
		t.Parallel()
		d := t.TempDir()
		repo := plainRepo(t, filepath.Join(d, "repo"))
		backup(t, vol, repo, "--chunk-size", "256KiB")
		damage(t, repo)
		// The same bytes under another path: no parent snapshot, so every
		// chunk reaches a compressor, which finds it stored.
		other := filepath.Join(d, "copy.img")
		data, err := os.ReadFile(vol)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, data, 0o600); err != nil {
			t.Fatal(err)
		}
		again := backup(t, other, repo, "--chunk-size", "256KiB")
		if again.NewChunks != 2 {
			t.Errorf("backup of the copy stored %d chunks, want the 2 damaged ones", again.NewChunks)
		}
		verifyOK(t, repo, again.SnapshotID, "deduplicated chunks")
	})

	t.Run("unchanged files", func(t *testing.T) {
		t.Parallel()
		d := t.TempDir()
		src, repo := filepath.Join(d, "src"), plainRepo(t, filepath.Join(d, "repo"))
		writeTree(t, src, 300)
		if err := os.WriteFile(filepath.Join(src, "big.img"), mustRead(t, vol), 0o644); err != nil {
			t.Fatal(err)
		}
		backup(t, src, repo, "--chunk-size", "64KiB")
		damage(t, repo)
		again := backup(t, src, repo, "--chunk-size", "64KiB")
		if again.UnchangedFiles == 0 || again.ChangedFiles == 0 {
			t.Errorf("second tree backup: %d unchanged, %d changed; want the files in damaged chunks read again, the rest reused",
				again.UnchangedFiles, again.ChangedFiles)
		}
		verifyOK(t, repo, again.SnapshotID, "unchanged files' extents")
		out := filepath.Join(d, "restored")
		ok(t, "restore", again.SnapshotID, out, "-r", repo)
		sameTree(t, src, out)
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// corrupt flips a byte in the middle of the stored chunk object at path,
// keeping its length: only reading it back finds the damage.
func corrupt(t *testing.T, path string) string {
	t.Helper()
	data := mustRead(t, path)
	data[len(data)/2] ^= 0x5a
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(path)
}

// damageRecords lists the chunks a directory repository records as
// damaged.
func damageRecords(t *testing.T, repo string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repo, "damaged"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestCorruptChunkRepaired: a chunk damaged inside its payload keeps its
// length, so a backup that only looks at headers would deduplicate against
// it. Once verify, check or a restore has found it, the next backup of the
// same source stores it again, and every snapshot that names it verifies.
func TestCorruptChunkRepaired(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(t.Context(), vol, 2*mib, volgen.Options{Seed: 22, Mix: volgen.Mix{Random: 1}}); err != nil {
		t.Fatal(err)
	}
	finders := []struct {
		name string
		find func(t *testing.T, repo, snap string)
	}{
		{"verify", func(t *testing.T, repo, snap string) {
			fails(t, exitError, []string{"1 damaged or differing chunk"}, "verify", snap, "-r", repo)
		}},
		{"check", func(t *testing.T, repo, snap string) {
			r := fails(t, exitError, []string{"1 damaged chunk", "recorded"}, "check", "-r", repo, "--read-data")
			if !strings.Contains(r.stdout, "AFFECTED snapshot "+snap) {
				t.Errorf("check does not name the affected snapshot %s:\n%s", snap, r.stdout)
			}
		}},
		{"restore", func(t *testing.T, repo, snap string) {
			fails(t, exitError, []string{"corrupt"}, "restore", snap, filepath.Join(t.TempDir(), "out.img"), "-r", repo)
		}},
	}
	for _, tt := range finders {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := plainRepo(t, filepath.Join(t.TempDir(), "repo"))
			first := backup(t, vol, repo, "--chunk-size", "256KiB")
			bad := corrupt(t, chunkFiles(t, repo)[3])

			// Without a record the damage is invisible to a backup: an
			// unchanged volume stores nothing.
			tt.find(t, repo, first.SnapshotID)
			if got := damageRecords(t, repo); !slices.Equal(got, []string{bad}) {
				t.Fatalf("damage records %q after %s, want %q", got, tt.name, bad)
			}
			again := backup(t, vol, repo, "--chunk-size", "256KiB")
			if again.NewChunks != 1 {
				t.Errorf("the next backup stored %d chunks, want the damaged one", again.NewChunks)
			}
			if got := damageRecords(t, repo); len(got) != 0 {
				t.Errorf("damage records %q after the repair, want none", got)
			}
			for _, snap := range []string{first.SnapshotID, again.SnapshotID} {
				ok(t, "verify", snap, "-r", repo, "--compare", vol)
			}
			ok(t, "check", "-r", repo, "--read-data")
		})
	}
}

// TestTreeRestoreAroundDamage: a tree restore that meets a damaged chunk
// restores every other file, names the files it could not, exits with
// warnings, and leaves no partial file; once a backup has repaired the
// chunk, the whole tree restores.
func TestTreeRestoreAroundDamage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, repo := filepath.Join(dir, "src"), plainRepo(t, filepath.Join(dir, "repo"))
	writeTree(t, src, 200)
	first := backup(t, src, repo, "--chunk-size", "16KiB")
	files := chunkFiles(t, repo)
	bad := corrupt(t, files[len(files)/2])

	out := filepath.Join(dir, "out")
	r := fails(t, exitWarnings, []string{"not restored: chunk " + bad + " is damaged"}, "restore", first.SnapshotID, out, "-r", repo)
	var lost []string
	for line := range strings.Lines(r.stderr) {
		if p, _, found := strings.Cut(strings.TrimSpace(line), ": not restored: chunk "); found {
			lost = append(lost, p)
		}
	}
	if len(lost) == 0 || len(lost) >= 200 {
		t.Fatalf("%d files named as not restored, want some but not all:\n%s", len(lost), r.stderr)
	}
	checkNoPartials(t, out)
	// Every other file is there, whole; the lost ones are not.
	want := describeTree(t, src)
	got := describeTree(t, out)
	for _, p := range lost {
		if _, there := got[p]; there {
			t.Errorf("%s named as not restored, but it is there", p)
		}
		delete(want, p)
	}
	for p, w := range want {
		if g, there := got[p]; !there {
			t.Errorf("%s not restored, and not named", p)
		} else if w.Type == "file" && w.Sum != g.Sum {
			t.Errorf("%s restored with other content", p)
		}
	}

	// The restore recorded the chunk: the next backup repairs it.
	again := backup(t, src, repo, "--chunk-size", "16KiB")
	if again.NewChunks != 1 {
		t.Errorf("the next backup stored %d chunks, want the damaged one", again.NewChunks)
	}
	out2 := filepath.Join(dir, "out2")
	ok(t, "restore", first.SnapshotID, out2, "-r", repo)
	sameTree(t, src, out2)
}
