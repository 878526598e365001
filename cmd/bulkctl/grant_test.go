package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// TestRestoreChunks: a restore's grant covers the chunks the restore
// reads: all of a snapshot's, or those holding the selected files, never
// a zero chunk.
func TestRestoreChunks(t *testing.T) {
	t.Parallel()
	name := func(s string) string { return chunk.Sum([]byte(s)).String() }
	a, b, c := name("a"), name("b"), name("c")
	file := func(path string, chunks ...int) manifest.Entry {
		e := manifest.Entry{Path: path, Type: manifest.TypeFile, Size: int64(100 * len(chunks))}
		for _, i := range chunks {
			e.Content = append(e.Content, manifest.Extent{Chunk: i, Length: 100})
		}
		return e
	}
	link := file("e", 3)
	link.LinkTo = "d/c"
	snap := &manifest.Snapshot{
		Mode: manifest.ModeFiles,
		Chunks: []manifest.Chunk{
			{Hash: a, Length: 100, StoredSize: 50}, {Hash: b, Length: 100, StoredSize: 50}, {Zero: true, Length: 100},
			{Hash: c, Length: 100, StoredSize: 50},
		},
		Files: []manifest.Entry{
			{Path: ".", Type: manifest.TypeDir},
			file("a", 0),
			{Path: "d", Type: manifest.TypeDir},
			file("d/b", 1, 2),
			file("d/c", 3),
			link,
		},
	}
	tests := []struct {
		name  string
		paths []string
		want  []string
		err   string
	}{
		{"whole snapshot", nil, []string{a, b, c}, ""},
		{"one file", []string{"a"}, []string{a}, ""},
		{"a directory", []string{"d"}, []string{b, c}, ""},
		{"a file with a hole", []string{"d/b"}, []string{b}, ""},
		{"a hard link without its first name", []string{"e"}, []string{c}, ""},
		{"two paths", []string{"a", "e"}, []string{a, c}, ""},
		{"a path the snapshot lacks", []string{"nope"}, nil, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := restoreChunks(snap, tt.paths)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("restoreChunks(%q) = %v, %v; want an error naming %q", tt.paths, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("restoreChunks(%q) = %q, want %q", tt.paths, got, want)
			}
		})
	}
}

// TestEncryptedPathRestore: a restore of one path of an encrypted tree
// snapshot writes that file, byte for byte, and nothing else.
func TestEncryptedPathRestore(t *testing.T) {
	dir := t.TempDir()
	repo := passwordRepo(t, dir)
	src := filepath.Join(dir, "src")
	for _, d := range []string{"big", "other"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeVolume(t, filepath.Join(src, "big", "one.bin"), 512*kib, 51)
	writeVolume(t, filepath.Join(src, "other", "two.bin"), 512*kib, 52)
	backup(t, src, repo, "--mode", "files", "--chunk-size", "128KiB")

	out := filepath.Join(dir, "out")
	ok(t, "restore", "latest", out, "-r", repo, "--path", filepath.Join(src, "big", "one.bin"))
	sameFile(t, filepath.Join(src, "big", "one.bin"), filepath.Join(out, "big", "one.bin"))
	if _, err := os.Stat(filepath.Join(out, "other")); !os.IsNotExist(err) {
		t.Errorf("a restore of big/one.bin made other/: %v", err)
	}
}

// passwordRepo makes an encrypted repository under dir with bulkctl init,
// its key wrapped by a password that BULK_PASSWORD_FILE then names (and no
// other secret in the environment), and returns its path.
func passwordRepo(t *testing.T, dir string) string {
	t.Helper()
	repo := filepath.Join(dir, "repo")
	t.Setenv("BULK_PASSWORD", "")
	t.Setenv("BULK_IDENTITY_FILE", "")
	t.Setenv("BULK_WRITE_KEY_FILE", "")
	t.Setenv("BULK_PASSWORD_FILE", writeSecret(t, dir, "password", "correct horse battery staple\n"))
	ok(t, "init", "-r", repo, "--work-factor", "10")
	return repo
}
