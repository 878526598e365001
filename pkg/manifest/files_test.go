package manifest_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// filesSample returns a valid files-mode snapshot of this tree, in walk
// order, with two chunks of packed content:
//
//	.
//	a/            dir
//	a/b.txt       10 bytes   chunk 0 [0,10)
//	a/big         5000 bytes chunk 0 [10,4096) + chunk 1 [0,914)
//	a/hard        hard link of a/b.txt
//	a/sub/        dir
//	a/sub/d       empty file
//	empty/        empty dir
//	fifo          special
//	link          symlink to a
//	unread        file that could not be read
func filesSample() *manifest.Snapshot {
	h0 := chunk.Sum([]byte("chunk 0")).String()
	h1 := chunk.Sum([]byte("chunk 1")).String()
	mtime := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC).UnixNano()
	return &manifest.Snapshot{
		Version: manifest.Version, ID: "f11e5abc", Time: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC),
		Host: "web1", Path: "/srv/www", Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		Size: 5010, ChunkSize: 4096, Hash: "sha256", Compression: "zstd", Level: "fastest",
		Chunks: []manifest.Chunk{
			{Offset: 0, Length: 4096, Hash: h0, StoredSize: 300},
			{Offset: 0, Length: 914, Hash: h1, StoredSize: 80},
		},
		Files: []manifest.Entry{
			{Path: ".", Type: manifest.TypeDir, Mode: 0o755, MTime: mtime},
			{Path: "a", Type: manifest.TypeDir, Mode: 0o1777, UID: 1000, GID: 1000, MTime: mtime},
			{Path: "a/b.txt", Type: manifest.TypeFile, Mode: 0o644, MTime: mtime, Size: 10, Inode: 12, Links: 2,
				Content: []manifest.Extent{{Chunk: 0, Offset: 0, Length: 10}}},
			{Path: "a/big", Type: manifest.TypeFile, Mode: 0o4755, MTime: mtime, Size: 5000, Inode: 13, Links: 1,
				Content: []manifest.Extent{{Chunk: 0, Offset: 10, Length: 4086}, {Chunk: 1, Offset: 0, Length: 914}}},
			{Path: "a/hard", Type: manifest.TypeFile, Mode: 0o644, MTime: mtime, Size: 10, Inode: 12, Links: 2, LinkTo: "a/b.txt",
				Content: []manifest.Extent{{Chunk: 0, Offset: 0, Length: 10}}},
			{Path: "a/sub", Type: manifest.TypeDir, Mode: 0o700, MTime: mtime},
			{Path: "a/sub/d", Type: manifest.TypeFile, Mode: 0o600, MTime: mtime, Inode: 14, Links: 1},
			{Path: "empty", Type: manifest.TypeDir, Mode: 0o755, MTime: mtime},
			{Path: "fifo", Type: manifest.TypeSpecial, Mode: 0o644, MTime: mtime, Warning: "FIFO skipped"},
			{Path: "link", Type: manifest.TypeSymlink, Mode: 0o777, MTime: mtime, Target: "a"},
			{Path: "unread", Type: manifest.TypeFile, Mode: 0o600, MTime: mtime, Size: 77, Inode: 15, Links: 1,
				Unread: true, Warning: "not readable: permission denied"},
		},
		Stats: manifest.Stats{Files: 10, NewFiles: 4, Warnings: 2},
	}
}

// entry returns a pointer to the sample's entry named p.
func entry(t *testing.T, s *manifest.Snapshot, p string) *manifest.Entry {
	t.Helper()
	for i := range s.Files {
		if s.Files[i].Path == p {
			return &s.Files[i]
		}
	}
	t.Fatalf("no entry %q in the sample", p)
	return nil
}

// addEntry appends e (a regular file of mode 0644 unless set otherwise),
// keeping the sample valid unless e itself is not.
func addEntry(s *manifest.Snapshot, e manifest.Entry) {
	if e.Type == "" {
		e.Type = manifest.TypeFile
	}
	if e.Mode == 0 {
		e.Mode = 0o644
	}
	s.Files = append(s.Files, e)
}

func TestFilesRoundTrip(t *testing.T) {
	t.Parallel()
	s := filesSample()
	data, err := manifest.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
}

func TestValidateFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(t *testing.T, s *manifest.Snapshot)
		wantMsg string // a piece of the error naming what is wrong
	}{
		{"absolute path", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "/etc/passwd"})
		}, "absolute"},
		{"dot dot", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: ".."})
		}, `".."`},
		{"dot dot under a dir", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "a/.."})
		}, "not clean"},
		{"dot dot inside", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "a/../b"})
		}, "not clean"},
		{"leading dot dot", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "../x"})
		}, `".."`},
		{"dot slash", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "./a"})
		}, "not clean"},
		{"double slash", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "a//b"})
		}, "not clean"},
		{"trailing slash", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "x/"})
		}, "not clean"},
		{"empty path", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: ""})
		}, "empty path"},
		{"NUL", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "x\x00y"})
		}, "UTF-8"},
		{"invalid UTF-8", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "x\xffy"})
		}, "UTF-8"},
		{"encoded name in version 2", func(t *testing.T, s *manifest.Snapshot) {
			s.Version = 2
			addEntry(s, manifest.Entry{Path: manifest.EncodeName("x\xffy")})
		}, "need manifest version 3"},
		{"encoded target in version 2", func(t *testing.T, s *manifest.Snapshot) {
			s.Version = 2
			entry(t, s, "link").Target = manifest.EncodeTarget("../\xfe")
		}, "need manifest version 3"},
		{"encoded text name", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "\x00" + base64.RawURLEncoding.EncodeToString([]byte("plain"))})
		}, "must be stored as text"},
		{"encoded name with a slash", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "\x00" + base64.RawURLEncoding.EncodeToString([]byte("a/\xff"))})
		}, "holds '/' or NUL"},
		{"encoded name, bad base64", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "\x00!!"})
		}, "encoded name"},
		{"encoded name, padded", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "\x00" + base64.URLEncoding.EncodeToString([]byte("\xff"))})
		}, "encoded name"},
		{"duplicate path", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "fifo", Type: manifest.TypeSpecial})
		}, "listed twice"},
		{"duplicate root", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: ".", Type: manifest.TypeDir})
		}, "listed twice"},
		{"entry before its parent dir", func(t *testing.T, s *manifest.Snapshot) {
			s.Files[5], s.Files[6] = s.Files[6], s.Files[5] // a/sub/d before a/sub
		}, "comes before its directory"},
		{"parent dir missing", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "nodir/x"})
		}, "comes before its directory"},
		{"entry under a symlink", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "link/x"})
		}, "lies under a symlink"},
		{"dir under a symlink", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "link/d", Type: manifest.TypeDir})
		}, "lies under a symlink"},
		{"entry under a file", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "a/b.txt/x"})
		}, "lies under a file"},
		{"entry under a special", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "fifo/x"})
		}, "lies under a special"},
		{"no entries", func(t *testing.T, s *manifest.Snapshot) {
			s.Files, s.Size, s.Chunks = nil, 0, nil
		}, `"."`},
		{"dot not first", func(t *testing.T, s *manifest.Snapshot) {
			s.Files[0], s.Files[1] = s.Files[1], s.Files[0]
		}, `"."`},
		{"root not a dir", func(t *testing.T, s *manifest.Snapshot) {
			s.Files[0].Type = manifest.TypeSymlink
			s.Files[0].Target = "/"
		}, `"."`},
		{"hard link to a later entry", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/hard").LinkTo = "a/sub/d"
		}, "not an earlier regular file"},
		{"hard link to a nonexistent entry", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/hard").LinkTo = "a/nope"
		}, "not an earlier regular file"},
		{"hard link to a dir", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/hard").LinkTo = "a"
		}, "not an earlier regular file"},
		{"hard link to a hard link", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "again", LinkTo: "a/hard"})
		}, "not an earlier regular file"},
		{"hard link to itself", func(t *testing.T, s *manifest.Snapshot) {
			e := entry(t, s, "a/hard")
			e.LinkTo = e.Path
		}, "not an earlier regular file"},
		{"extent outside its chunk", func(t *testing.T, s *manifest.Snapshot) {
			e := entry(t, s, "a/big")
			e.Content[1].Offset = 1 // [1,+914) passes the chunk's 914 bytes
		}, "outside chunk 1"},
		{"extent at a negative offset", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/b.txt").Content[0].Offset = -1
		}, "outside chunk 0"},
		{"empty extent", func(t *testing.T, s *manifest.Snapshot) {
			e := entry(t, s, "a/big")
			e.Content = append(e.Content, manifest.Extent{Chunk: 1, Offset: 914, Length: 0})
		}, "outside chunk 1"},
		{"extent chunk index out of range", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/big").Content[1].Chunk = 2
		}, "names chunk 2 of 2"},
		{"extent chunk index negative", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/big").Content[1].Chunk = -1
		}, "names chunk -1"},
		{"extents short of size", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/big").Size++
			s.Size++
		}, "extents hold 5000 bytes, the file 5001"},
		{"extents past size", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/big").Size--
			s.Size--
		}, "extents hold more than the file's 4999 bytes"},
		{"extent offset that overflows", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/b.txt").Content[0].Offset = math.MaxInt64 - 5 // + 10 wraps negative
		}, "outside chunk 0"},
		{"extent length that overflows", func(t *testing.T, s *manifest.Snapshot) {
			e := entry(t, s, "a/big")
			e.Content[0] = manifest.Extent{Chunk: 0, Offset: 10, Length: math.MaxInt64}
		}, "outside chunk 0"},
		{"a size that would overflow the total", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/big").Size = math.MaxInt64
			s.Size = math.MaxInt64 - 5
		}, "extents hold 5000 bytes, the file 9223372036854775807"},
		{"hard link of another size than its file", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/hard").Size = 11
		}, "hard link of 11 bytes"},
		{"hard link extents short of size", func(t *testing.T, s *manifest.Snapshot) {
			e := entry(t, s, "a/hard")
			e.Content = e.Content[:len(e.Content):len(e.Content)]
			e.Content = append([]manifest.Extent(nil), e.Content...)
			e.Content[len(e.Content)-1].Length--
		}, "extents hold 9 bytes"},
		{"negative file size", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/sub/d").Size = -1
		}, "negative size"},
		{"unread file with content", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "unread").Content = []manifest.Extent{{Chunk: 1, Offset: 0, Length: 77}}
		}, "unread, yet with content"},
		{"size below the files' bytes", func(t *testing.T, s *manifest.Snapshot) {
			s.Size--
		}, "size 5009"},
		{"size counting the hard link twice", func(t *testing.T, s *manifest.Snapshot) {
			s.Size += 10
		}, "size 5020"},
		{"size counting the unread file", func(t *testing.T, s *manifest.Snapshot) {
			s.Size += 77
		}, "size 5087"},
		{"version 1 with files mode", func(t *testing.T, s *manifest.Snapshot) {
			s.Version = 1
		}, "version 2"},
		{"mode bits above 07777", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/b.txt").Mode = 0o10644
		}, "mode 10644"},
		{"unknown type", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "x", Type: "door"})
		}, `unknown type "door"`},
		{"dir with content", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "empty").Size = 1
		}, "a dir has no content"},
		{"symlink with a hard link", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "link").LinkTo = "a/b.txt"
		}, "a symlink has no content"},
		{"symlink without target", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "link").Target = ""
		}, "symlink target"},
		{"symlink target with NUL", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "link").Target = "a\x00b"
		}, "symlink target"},
		{"dir with a target", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "empty").Target = "a"
		}, "no link target"},
		{"file with a target", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/sub/d").Target = "a"
		}, "no link target"},
		{"chunk not at offset 0", func(t *testing.T, s *manifest.Snapshot) {
			s.Chunks[1].Offset = 4096
		}, "chunk 1: offset 4096"},
		{"chunk longer than chunk size", func(t *testing.T, s *manifest.Snapshot) {
			s.Chunks[0].Length = 4097
		}, "chunk 0: offset 0 and length 4097"},
		{"chunk bad hash", func(t *testing.T, s *manifest.Snapshot) {
			s.Chunks[0].Hash = "../../etc/passwd"
		}, "chunk 0"},
		{"zero chunk with a hash", func(t *testing.T, s *manifest.Snapshot) {
			s.Chunks[1].Zero = true
		}, "zero chunk 1"},
		{"files-mode unknown hash", func(t *testing.T, s *manifest.Snapshot) {
			s.Hash = "md5"
		}, "unknown hash"},
		{"files-mode odd chunk size", func(t *testing.T, s *manifest.Snapshot) {
			s.ChunkSize = 5000
		}, "chunk size 5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := filesSample()
			tt.mutate(t, s)
			err := s.Validate()
			if !errors.Is(err, manifest.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Validate = %q, want it to mention %q", err, tt.wantMsg)
			}
			if _, err := manifest.Encode(s); !errors.Is(err, manifest.ErrInvalid) {
				t.Errorf("Encode = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestDecodeFilesRejects checks that Decode, not only Encode, refuses an
// unsafe manifest: a repository is not trusted to hold only what this
// build wrote.
func TestDecodeFilesRejects(t *testing.T) {
	t.Parallel()
	data, err := manifest.Encode(filesSample())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ old, new string }{
		{`"path":"a/sub/d"`, `"path":"../d"`},
		{`"path":"a/sub/d"`, `"path":"/d"`},
		{`"path":"a/sub/d"`, `"path":"link/d"`},
		{`"path":"a/sub/d"`, `"path":"a/sub/../../d"`},
		{`"path":"a/sub/d"`, `"path":"a/sub/d\u0000"`},
		{fmt.Sprintf(`"version":%d`, manifest.Version), `"version":1`},
	} {
		bad := strings.Replace(string(data), tt.old, tt.new, 1)
		if bad == string(data) {
			t.Fatalf("%s is not in the encoded sample", tt.old)
		}
		if _, err := manifest.Decode([]byte(bad)); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("Decode with %s = %v, want ErrInvalid", tt.new, err)
		}
	}
}

func TestValidateFilesAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(t *testing.T, s *manifest.Snapshot)
	}{
		{"only the root", func(t *testing.T, s *manifest.Snapshot) {
			s.Files, s.Chunks, s.Size = s.Files[:1], nil, 0
		}},
		{"hard link to an unread file", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "unread2", LinkTo: "unread", Unread: true})
		}},
		{"zero chunk", func(t *testing.T, s *manifest.Snapshot) {
			s.Chunks[1].Hash, s.Chunks[1].StoredSize, s.Chunks[1].Zero = "", 0, true
		}},
		{"all mode bits", func(t *testing.T, s *manifest.Snapshot) {
			entry(t, s, "a/b.txt").Mode = 0o7777
		}},
		{"names with spaces, unicode and dots", func(t *testing.T, s *manifest.Snapshot) {
			addEntry(s, manifest.Entry{Path: "a b", Type: manifest.TypeDir})
			addEntry(s, manifest.Entry{Path: "a b/ünïcødé 日本"})
			addEntry(s, manifest.Entry{Path: "a b/..hidden"})
			addEntry(s, manifest.Entry{Path: "a b/...", Type: manifest.TypeSymlink, Target: "../../outside"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := filesSample()
			tt.mutate(t, s)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckPath(t *testing.T) {
	t.Parallel()
	good := []string{".", "a", "a/b", ".hidden", "a/..b", "...", "a b/c d", "日本/語"}
	bad := []string{"", "/", "/a", "..", "../a", "a/..", "a/../b", "./a", "a/.", "a//b", "a/", "a\x00", "\xff"}
	for _, p := range good {
		if err := manifest.CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range bad {
		if err := manifest.CheckPath(p); err == nil {
			t.Errorf("CheckPath(%q) = nil, want an error", p)
		}
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	all := func() []string {
		var out []string
		for _, e := range filesSample().Files {
			out = append(out, e.Path)
		}
		return out
	}()
	tests := []struct {
		name    string
		paths   []string
		want    []string
		wantErr string // a piece of the error, "" for none
	}{
		{"nil is all", nil, all, ""},
		{"dot is all", []string{"."}, all, ""},
		{"subtree", []string{"a/sub"}, []string{".", "a", "a/sub", "a/sub/d"}, ""},
		{"bigger subtree", []string{"a"}, []string{".", "a", "a/b.txt", "a/big", "a/hard", "a/sub", "a/sub/d"}, ""},
		{"single file", []string{"a/big"}, []string{".", "a", "a/big"}, ""},
		{"single deep file", []string{"a/sub/d"}, []string{".", "a", "a/sub", "a/sub/d"}, ""},
		{"symlink itself, not its target", []string{"link"}, []string{".", "link"}, ""},
		{"several paths in manifest order", []string{"link", "a/sub/d", "empty"},
			[]string{".", "a", "a/sub", "a/sub/d", "empty", "link"}, ""},
		{"overlapping paths", []string{"a", "a/sub/d"}, []string{".", "a", "a/b.txt", "a/big", "a/hard", "a/sub", "a/sub/d"}, ""},
		{"dot with another", []string{".", "a/big"}, all, ""},
		{"not present", []string{"a/nope"}, nil, `"a/nope"`},
		{"one of several not present", []string{"a/big", "zzz"}, nil, `"zzz"`},
		{"name prefix is not a parent", []string{"a/su"}, nil, `"a/su"`},
		{"under a file", []string{"a/big/x"}, nil, `"a/big/x"`},
		{"unsafe", []string{"../a"}, nil, `".."`},
		{"absolute", []string{"/a"}, nil, "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := filesSample()
			entries, err := s.Select(tt.paths)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Select(%q) = %v, want an error naming %s", tt.paths, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select(%q): %v", tt.paths, err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Path)
				if want := *entry(t, s, e.Path); !reflect.DeepEqual(e, want) {
					t.Errorf("Select(%q) changed %q:\n got %+v\nwant %+v", tt.paths, e.Path, e, want)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Select(%q) = %q, want %q", tt.paths, got, tt.want)
			}
		})
	}
}

func ExampleSnapshot_Select() {
	s := &manifest.Snapshot{
		Version: manifest.Version, ID: "x", Mode: manifest.ModeFiles, Hash: "sha256", ChunkSize: 4096,
		Files: []manifest.Entry{
			{Path: ".", Type: manifest.TypeDir},
			{Path: "etc", Type: manifest.TypeDir},
			{Path: "etc/hosts", Type: manifest.TypeFile},
			{Path: "etc/passwd", Type: manifest.TypeFile},
			{Path: "var", Type: manifest.TypeDir},
		},
	}
	entries, err := s.Select([]string{"etc/hosts"})
	for _, e := range entries {
		fmt.Println(e.Path)
	}
	fmt.Println(err)
	// Output:
	// .
	// etc
	// etc/hosts
	// <nil>
}

func FuzzDecodeFiles(f *testing.F) {
	data, err := manifest.Encode(filesSample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := manifest.Decode(data)
		if err != nil {
			return
		}
		for _, e := range s.Files {
			if err := manifest.CheckPath(e.Path); err != nil {
				t.Fatalf("Decode accepted entry %q: %v", e.Path, err)
			}
		}
	})
}

func TestNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		os, manifest string
	}{
		{"plain.txt", "plain.txt"},
		{"dir/sub/ünïcode", "dir/sub/ünïcode"},
		{"bad\xff", "\x00YmFk_w"},
		{"ok/\xfe\xfd/x", "ok/\x00_v0/x"},
	}
	for _, tt := range tests {
		if got := manifest.EncodePath(tt.os); got != tt.manifest {
			t.Errorf("EncodePath(%q) = %q, want %q", tt.os, got, tt.manifest)
		}
		if got := manifest.OSPath(tt.manifest); got != tt.os {
			t.Errorf("OSPath(%q) = %q, want %q", tt.manifest, got, tt.os)
		}
		if err := manifest.CheckPath(tt.manifest); err != nil {
			t.Errorf("CheckPath(%q): %v", tt.manifest, err)
		}
	}
	if got := manifest.Display("ok/\x00_v0/x"); got != `"ok/\xfe\xfd/x"` {
		t.Errorf("Display = %s", got)
	}
	if got := manifest.OSTarget(manifest.EncodeTarget("../a\xff/b")); got != "../a\xff/b" {
		t.Errorf("target round trip = %q", got)
	}
	// A snapshot with an encoded name is written as version 3.
	s := filesSample()
	addEntry(s, manifest.Entry{Path: manifest.EncodeName("\xff")})
	s.SetVersion()
	if s.Version != 3 {
		t.Errorf("SetVersion with an encoded name = %d, want 3", s.Version)
	}
	if _, err := manifest.Encode(s); err != nil {
		t.Error(err)
	}
	s = filesSample()
	s.SetVersion()
	if s.Version != 2 {
		t.Errorf("SetVersion without encoded names = %d, want 2", s.Version)
	}
}

func TestTreePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		root, p, want string
	}{
		{"/srv", "etc/nginx", "etc/nginx"},
		{"/srv", "./etc//nginx/", "etc/nginx"},
		{"/srv", "/srv/etc/nginx", "etc/nginx"},
		{"/srv/", "/srv/etc/nginx", "etc/nginx"},
		{"/srv", "/srv", "."},
		{"/srv", "/srv/", "."},
		{"/srv", ".", "."},
		{"/srv", "", "."},
		{"/srv", "/", "."},
		{"/srv", "/srvx/a", "srvx/a"},       // not under /srv: relative to it
		{"/srv", "/etc/nginx", "etc/nginx"}, // likewise
		{"/srv", "../../etc", "etc"},        // never above the root
		{"/srv", "/srv/../etc", "etc"},
		{"/", "/etc/nginx", "etc/nginx"},
		{"", "/etc/nginx", "etc/nginx"},
		{"/srv", "/srv/dir-\xff", manifest.EncodePath("dir-\xff")},
	}
	for _, tt := range tests {
		if got := manifest.TreePath(tt.root, tt.p); got != tt.want {
			t.Errorf("TreePath(%q, %q) = %q, want %q", tt.root, tt.p, got, tt.want)
		}
	}
}

// TestSelectNotFoundHint: a path given as on the host, less its leading
// "/" (what a restore request carries), fails naming the path to use.
func TestSelectNotFoundHint(t *testing.T) {
	t.Parallel()
	s := filesSample()
	s.Path = "/srv/data"
	tests := []struct {
		path string
		want []string
	}{
		{"srv/data/a/big", []string{`"srv/data/a/big" is not in snapshot`, "relative to the backed-up directory /srv/data", `use "a/big" (or "/srv/data/a/big")`}},
		{"srv/data/a/nope", []string{`"srv/data/a/nope" is not in snapshot`, "(paths are relative to the backed-up directory /srv/data)"}},
		{"nope", []string{`"nope" is not in snapshot`, "relative to the backed-up directory /srv/data"}},
	}
	for _, tt := range tests {
		_, err := s.Select([]string{tt.path})
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Select(%q) = %v, want an error holding %q", tt.path, err, w)
			}
		}
	}
}

func TestWalkOrder(t *testing.T) {
	t.Parallel()
	paths := []string{"a-b", "a/x", ".", "a", "b", "a/x/y", "a/w", "a.txt", "a/x-y"}
	slices.SortFunc(paths, manifest.WalkOrder)
	if want := []string{".", "a", "a/w", "a/x", "a/x/y", "a/x-y", "a-b", "a.txt", "b"}; !slices.Equal(paths, want) {
		t.Errorf("walk order %q, want %q", paths, want)
	}
}

// TestWalkOrderNamesNotText: names that are not UTF-8 text sort by their
// bytes on the host, as a scan lists them, not by their encoded form,
// which sorts elsewhere.
func TestWalkOrderNamesNotText(t *testing.T) {
	t.Parallel()
	enc := manifest.EncodePath
	paths := []string{enc("d/\x80\x81"), "d/inside.txt", "d", ".", enc("caf\xe9"), "cafe", "z"}
	slices.SortFunc(paths, manifest.WalkOrder)
	want := []string{".", "cafe", enc("caf\xe9"), "d", "d/inside.txt", enc("d/\x80\x81"), "z"}
	if !slices.Equal(paths, want) {
		t.Errorf("walk order %q, want %q", paths, want)
	}
	if strings.Compare(enc("d/\x80\x81"), "d/inside.txt") >= 0 {
		t.Error("the encoded form sorts after as well: the case shows nothing")
	}
}
