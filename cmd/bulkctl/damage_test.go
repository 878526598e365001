package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// chunkFiles lists the chunk objects of a directory repository, sorted.
func chunkFiles(t *testing.T, repo string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(repo, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
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
