package restore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/safefs"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/restore"
)

const treeChunkSize = 4096

// partTag is in the name of every partial file of a tree restore.
const partTag = ".bulkpart-"

// treeChunk is one stored chunk of a tree and where its bytes go.
type treeChunk struct {
	id     chunk.ID
	length int64
	parts  []plan.Extent
}

// treeBundle is a repository holding the content of a tree's files, the
// tree's entries (without content: the Tree steps do not read it) and a
// directory for targets.
type treeBundle struct {
	repo    *repository.Repository
	base    string // targets go here
	entries []manifest.Entry
	data    map[string][]byte // regular files' bytes by path
	chunks  []treeChunk
}

// treeSetup packs the bytes of entries' regular files into chunks, as a
// files-mode backup does, stores them and returns the bundle. Entry sizes
// are set from data.
func treeSetup(t testing.TB, entries []manifest.Entry, data map[string][]byte) *treeBundle {
	t.Helper()
	repo, sealer, _ := newRepo(t)
	b := &treeBundle{repo: repo, base: t.TempDir(), entries: slices.Clone(entries), data: data}
	var files []string
	var sizes []int64
	for i, e := range b.entries {
		if e.Type != manifest.TypeFile {
			continue
		}
		if e.LinkTo != "" {
			b.entries[i].Size = int64(len(data[e.LinkTo]))
			continue
		}
		b.entries[i].Size = int64(len(data[e.Path]))
		files = append(files, e.Path)
		sizes = append(sizes, b.entries[i].Size)
	}
	for _, p := range plan.Packs(sizes, treeChunkSize, 0) {
		var raw []byte
		var parts []plan.Extent
		for _, x := range p.Parts {
			name := files[x.File]
			raw = append(raw, data[name][x.Offset:x.Offset+x.Length]...)
			parts = append(parts, plan.Extent{Path: name, FileOffset: x.Offset, ChunkOffset: x.PackOffset, Length: x.Length})
		}
		id := chunk.Sum(raw)
		if err := repo.PutChunk(t.Context(), id, sealer.Seal(nil, id, raw)); err != nil {
			t.Fatal(err)
		}
		b.chunks = append(b.chunks, treeChunk{id: id, length: p.Length, parts: parts})
	}
	return b
}

func (b *treeBundle) tree(name string) restore.Tree {
	return restore.Tree{Path: filepath.Join(b.base, name), JobID: "job-1"}
}

// writeExtents runs WriteExtents for every chunk.
func (b *treeBundle) writeExtents(t *testing.T, tr restore.Tree) error {
	var buf []byte
	for _, c := range b.chunks {
		var err error
		if buf, err = tr.WriteExtents(t.Context(), b.repo, c.id, c.length, c.parts, buf); err != nil {
			return err
		}
	}
	return nil
}

type step struct {
	name string
	run  func() error
}

// steps returns the steps of a tree restore of every entry, in order.
func (b *treeBundle) steps(t *testing.T, tr restore.Tree) []step {
	return []step{
		{"CreateEntries", func() error { return tr.CreateEntries(b.entries) }},
		{"WriteExtents", func() error { return b.writeExtents(t, tr) }},
		{"SetMetadata", func() error { return tr.SetMetadata(b.entries) }},
		{"MakeLinks", func() error { return tr.MakeLinks(b.entries) }},
		{"SetDirs", func() error { return tr.SetDirs(b.entries) }},
	}
}

// restoreTree runs every step times times in a row.
func (b *treeBundle) restoreTree(t *testing.T, tr restore.Tree, times int) {
	t.Helper()
	for _, s := range b.steps(t, tr) {
		for i := range times {
			if err := s.run(); err != nil {
				t.Fatalf("%s (run %d): %v", s.name, i+1, err)
			}
		}
	}
}

// owner returns the owner restored files get: as root, one that is not
// root's, so that chown is seen to happen (and not to drop setuid bits);
// else the user's own.
func owner() (uid, gid int) {
	if os.Geteuid() == 0 {
		return 1234, 5678
	}
	return os.Geteuid(), os.Getegid()
}

// sampleTree is a small tree with every kind of entry Tree restores.
func sampleTree() ([]manifest.Entry, map[string][]byte) {
	uid, gid := owner()
	long := strings.Repeat("L", 250) // a name near NAME_MAX: its partial name is hashed
	data := map[string][]byte{
		"d/a.txt":    []byte("alpha, hard linked as d/hard\n"),
		"d/big":      bytes.Repeat([]byte("0123456789abcdef"), (2*treeChunkSize+100)/16),
		"d/empty":    nil,
		"d/ro":       []byte("read only"),
		"d/sub/s":    []byte("setgid and sticky"),
		"ro-dir/f":   []byte("in a directory made read-only last"),
		long:         []byte("long name"),
		"sp ace ü 日": []byte("unicode"),
	}
	entries := []manifest.Entry{
		{Path: ".", Type: manifest.TypeDir, Mode: 0o750},
		{Path: "d", Type: manifest.TypeDir, Mode: 0o2755},
		{Path: "d/a.txt", Type: manifest.TypeFile, Mode: 0o644},
		{Path: "d/big", Type: manifest.TypeFile, Mode: 0o4755},
		{Path: "d/empty", Type: manifest.TypeFile, Mode: 0o600},
		{Path: "d/hard", Type: manifest.TypeFile, Mode: 0o644, LinkTo: "d/a.txt"},
		{Path: "d/ro", Type: manifest.TypeFile, Mode: 0o400},
		{Path: "d/sub", Type: manifest.TypeDir, Mode: 0o1777},
		{Path: "d/sub/s", Type: manifest.TypeFile, Mode: 0o2640},
		{Path: "dangling", Type: manifest.TypeSymlink, Mode: 0o777, Target: "../nowhere"},
		{Path: "link", Type: manifest.TypeSymlink, Mode: 0o777, Target: "d/a.txt"},
		{Path: long, Type: manifest.TypeFile, Mode: 0o644},
		{Path: "ro-dir", Type: manifest.TypeDir, Mode: 0o555},
		{Path: "ro-dir/f", Type: manifest.TypeFile, Mode: 0o644},
		{Path: "sp ace ü 日", Type: manifest.TypeFile, Mode: 0o600},
	}
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano()
	for i := range entries {
		e := &entries[i]
		e.MTime = t0 + int64(i)*int64(time.Hour+time.Nanosecond)
		e.UID, e.GID = os.Geteuid(), os.Getegid()
		switch e.Path {
		case "d/big", "link", "d/sub":
			e.UID, e.GID = uid, gid
		case "d/hard": // the same file as d/a.txt
			e.MTime = entries[2].MTime
		}
	}
	return entries, data
}

// sampleSetup is treeSetup of sampleTree.
func sampleSetup(t *testing.T) *treeBundle {
	t.Helper()
	entries, data := sampleTree()
	return treeSetup(t, entries, data)
}

// unlockDirs makes the target's directories writable again when the test
// ends, so that the temporary directory can be removed by a non-root user.
func unlockDirs(t *testing.T, dir string) {
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// checkTree checks that dir holds exactly the entries, with their content,
// type, mode, times, owner (as root) and hard links, and no partial files.
func (b *treeBundle) checkTree(t *testing.T, dir string, entries []manifest.Entry) {
	t.Helper()
	want := make(map[string]bool)
	for _, e := range entries {
		want[e.Path] = true
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch e.Type {
		case manifest.TypeDir:
			if !fi.IsDir() {
				t.Errorf("%s: %v, want a directory", e.Path, fi.Mode())
			}
		case manifest.TypeSymlink:
			if target, err := os.Readlink(p); err != nil || target != e.Target {
				t.Errorf("%s: link to %q (%v), want %q", e.Path, target, err, e.Target)
			}
		case manifest.TypeFile:
			if !fi.Mode().IsRegular() {
				t.Errorf("%s: %v, want a regular file", e.Path, fi.Mode())
				continue
			}
			src := e.Path
			if e.LinkTo != "" {
				src = e.LinkTo
				other, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(e.LinkTo)))
				if err != nil || !os.SameFile(fi, other) || st.Nlink != 2 {
					t.Errorf("%s: not a hard link of %s (links %d, %v)", e.Path, e.LinkTo, st.Nlink, err)
				}
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, b.data[src]) {
				t.Errorf("%s: %d bytes (%v), want the %d of %s", e.Path, len(got), err, len(b.data[src]), src)
			}
		}
		if e.Type != manifest.TypeSymlink && st.Mode&0o7777 != e.Mode {
			t.Errorf("%s: mode %o, want %o", e.Path, st.Mode&0o7777, e.Mode)
		}
		if st.Mtim.Nano() != e.MTime {
			t.Errorf("%s: mtime %v, want %v", e.Path, time.Unix(0, st.Mtim.Nano()).UTC(), time.Unix(0, e.MTime).UTC())
		}
		if os.Geteuid() == 0 && (int(st.Uid) != e.UID || int(st.Gid) != e.GID) {
			t.Errorf("%s: owner %d:%d, want %d:%d", e.Path, st.Uid, st.Gid, e.UID, e.GID)
		}
	}
	for _, p := range listTree(t, dir) {
		if !want[p] {
			t.Errorf("%s is in the target but not in the tree", p)
		}
	}
}

// listTree returns the slash paths under dir, "." included, in walk order.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func partials(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, p := range listTree(t, dir) {
		if strings.Contains(p, partTag) {
			out = append(out, p)
		}
	}
	return out
}

// TestTreeRestore restores the sample tree through every step, once, and
// with every step run twice, as a redelivered work item does: the result is
// the same.
func TestTreeRestore(t *testing.T) {
	t.Parallel()
	for _, runs := range []int{1, 2} {
		t.Run(fmt.Sprintf("steps run %d times", runs), func(t *testing.T) {
			t.Parallel()
			b := sampleSetup(t)
			tr := b.tree("target")
			unlockDirs(t, tr.Path)
			b.restoreTree(t, tr, runs)
			b.checkTree(t, tr.Path, b.entries)
		})
	}
}

// TestTreeRestoreIntoExistingDir restores into a directory that exists,
// holding other files, which stay.
func TestTreeRestoreIntoExistingDir(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	tr := b.tree("target")
	unlockDirs(t, tr.Path)
	if err := os.MkdirAll(filepath.Join(tr.Path, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(tr.Path, "d", "other")
	if err := os.WriteFile(other, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.restoreTree(t, tr, 1)
	checkFile(t, other, []byte("mine"))
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	// Removing d/other changed d's mtime: SetDirs, run again, sets it back.
	if err := tr.SetDirs(b.entries); err != nil {
		t.Fatal(err)
	}
	b.checkTree(t, tr.Path, b.entries)
}

func TestTreeRestoreMissingParent(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	tr := b.tree("no/such/parent")
	if err := tr.CreateEntries(b.entries); err == nil {
		t.Fatal("CreateEntries under a missing parent succeeded")
	}
	checkMissing(t, filepath.Join(b.base, "no"))
}

// makeOutside makes a directory "outside" beside the target holding a file
// "victim" and a directory "sub", which nothing may change, and returns its
// path and a check that it is unchanged.
func makeOutside(t *testing.T, base string) (string, func()) {
	t.Helper()
	dir := filepath.Join(base, "outside")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("do not touch"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := []string{".", "sub", "victim"}
	before := make(map[string]fs.FileInfo)
	for _, n := range names {
		fi, err := os.Lstat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = fi
	}
	return dir, func() {
		t.Helper()
		checkFile(t, victim, []byte("do not touch"))
		if got := listTree(t, dir); !slices.Equal(got, names) {
			t.Errorf("%s holds %q, want %q", dir, got, names)
		}
		for _, n := range names {
			now, err := os.Lstat(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			was := before[n]
			nowSt, wasSt := now.Sys().(*syscall.Stat_t), was.Sys().(*syscall.Stat_t)
			if now.Mode() != was.Mode() || nowSt.Uid != wasSt.Uid || nowSt.Gid != wasSt.Gid || !now.ModTime().Equal(was.ModTime()) {
				t.Errorf("outside/%s changed: %v %d:%d %v, was %v %d:%d %v", n,
					now.Mode(), nowSt.Uid, nowSt.Gid, now.ModTime(), was.Mode(), wasSt.Uid, wasSt.Gid, was.ModTime())
			}
		}
	}
}

// TestTreeExisting puts something where an entry goes. Without Overwrite
// the restore stops with ErrExists and leaves it as it was; with
// Overwrite it is replaced, and nothing it pointed to is written.
func TestTreeExisting(t *testing.T) {
	t.Parallel()
	file := func(data string) func(t *testing.T, p, outside string) {
		return func(t *testing.T, p, _ string) {
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		path string                                // relative to the target
		make func(t *testing.T, p, outside string) // creates it at p
	}{
		{"file where a file goes", "d/a.txt", file("old a")},
		{"file where a hard link goes", "d/hard", file("old hard")},
		{"file where a symlink goes", "link", file("old link")},
		{"file where a directory goes", "d/sub", file("old sub")},
		{"symlink out of the target where a file goes", "d/big", func(t *testing.T, p, outside string) {
			if err := os.Symlink(filepath.Join(outside, "victim"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to a directory out of the target where a directory goes", "d/sub", func(t *testing.T, p, outside string) {
			if err := os.Symlink(filepath.Join(outside, "sub"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{"hard link out of the target where a file goes", "d/ro", func(t *testing.T, p, outside string) {
			if err := os.Link(filepath.Join(outside, "victim"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink where a symlink goes, other target", "dangling", func(t *testing.T, p, _ string) {
			if err := os.Symlink("elsewhere", p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := sampleSetup(t)
			outside, checkOutside := makeOutside(t, b.base)
			tr := b.tree("target")
			unlockDirs(t, tr.Path)
			p := filepath.Join(tr.Path, filepath.FromSlash(tt.path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			tt.make(t, p, outside)
			before, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			var content []byte
			if before.Mode().IsRegular() {
				if content, err = os.ReadFile(p); err != nil {
					t.Fatal(err)
				}
			}

			var failed bool
			for _, s := range b.steps(t, tr) {
				if err := s.run(); err != nil {
					if !errors.Is(err, restore.ErrExists) {
						t.Fatalf("%s = %v, want ErrExists", s.name, err)
					}
					failed = true
					break
				}
			}
			if !failed {
				t.Fatalf("the restore succeeded over %s", tt.path)
			}
			after, err := os.Lstat(p)
			if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Fatalf("%s was replaced: %v, %v", tt.path, after, err)
			}
			if content != nil {
				checkFile(t, p, content)
			}
			checkOutside()

			tr.Overwrite = true
			b.restoreTree(t, tr, 1)
			b.checkTree(t, tr.Path, b.entries)
			checkOutside()
		})
	}
}

// TestTreeDirInTheWay puts a directory where a file goes: Overwrite or
// not, it is not replaced.
func TestTreeDirInTheWay(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	tr := b.tree("target")
	unlockDirs(t, tr.Path)
	inside := filepath.Join(tr.Path, "d", "a.txt", "keep")
	if err := os.MkdirAll(filepath.Dir(inside), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, overwrite := range []bool{false, true} {
		tr.Overwrite = overwrite
		if err := tr.CreateEntries(b.entries); err == nil || !strings.Contains(err.Error(), "directory is in the way") {
			t.Errorf("CreateEntries (overwrite %v) = %v, want a directory in the way", overwrite, err)
		}
	}
	checkFile(t, inside, []byte("keep"))
}

// TestTreeCreatedMeanwhile puts a file where one goes after CreateEntries
// made room for it: SetMetadata refuses to replace it.
func TestTreeCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	tr := b.tree("target")
	unlockDirs(t, tr.Path)
	if err := tr.CreateEntries(b.entries); err != nil {
		t.Fatal(err)
	}
	if err := b.writeExtents(t, tr); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(tr.Path, "d", "big")
	if err := os.WriteFile(p, []byte("meanwhile"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tr.SetMetadata(b.entries); !errors.Is(err, restore.ErrExists) {
		t.Fatalf("SetMetadata = %v, want ErrExists", err)
	}
	checkFile(t, p, []byte("meanwhile"))
}

// TestTreeUnsafePaths hands each step entries whose paths leave the target:
// each refuses with ErrUnsafePath and nothing appears outside the target.
func TestTreeUnsafePaths(t *testing.T) {
	t.Parallel()
	file := func(p string) manifest.Entry {
		return manifest.Entry{Path: p, Type: manifest.TypeFile, Mode: 0o644, Size: 1}
	}
	tests := []struct {
		name    string
		entries []manifest.Entry
		// refuse names the steps that must refuse; the others have no
		// business with the entry (MakeLinks only looks at hard links,
		// SetDirs at directories) and must not call it unsafe.
		refuse []string
	}{
		{"absolute file", []manifest.Entry{file("/abs")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"absolute into outside", []manifest.Entry{file("OUTSIDE/new")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"dot dot file", []manifest.Entry{file("../x")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"dot dot into outside", []manifest.Entry{file("../outside/victim")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"dot dot inside", []manifest.Entry{file("a/../../x")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"dot dot after a dir", []manifest.Entry{{Path: "a", Type: manifest.TypeDir, Mode: 0o755}, file("a/../../x")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"dot dot dir", []manifest.Entry{{Path: "..", Type: manifest.TypeDir, Mode: 0o777}}, []string{"CreateEntries", "SetMetadata", "SetDirs"}},
		{"absolute dir", []manifest.Entry{{Path: "OUTSIDE", Type: manifest.TypeDir, Mode: 0o777}}, []string{"CreateEntries", "SetMetadata", "SetDirs"}},
		{"absolute dir inside outside", []manifest.Entry{{Path: "OUTSIDE/sub", Type: manifest.TypeDir, Mode: 0o777}}, []string{"CreateEntries", "SetMetadata", "SetDirs"}},
		{"dot dot dir inside outside", []manifest.Entry{{Path: "../outside/sub", Type: manifest.TypeDir, Mode: 0o777}}, []string{"CreateEntries", "SetMetadata", "SetDirs"}},
		{"dot dot symlink", []manifest.Entry{{Path: "../evil", Type: manifest.TypeSymlink, Target: "/etc"}}, []string{"CreateEntries", "SetMetadata"}},
		{"hard link to outside", []manifest.Entry{{Path: "h", Type: manifest.TypeFile, Mode: 0o644, LinkTo: "../outside/victim"}}, []string{"MakeLinks"}},
		{"hard link to absolute", []manifest.Entry{{Path: "h", Type: manifest.TypeFile, Mode: 0o644, LinkTo: "OUTSIDE/victim"}}, []string{"MakeLinks"}},
		{"hard link at dot dot", []manifest.Entry{file("f"), {Path: "../h", Type: manifest.TypeFile, Mode: 0o644, LinkTo: "f"}}, []string{"CreateEntries", "SetMetadata", "MakeLinks"}},
		{"empty path", []manifest.Entry{file("")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
		{"NUL", []manifest.Entry{file("x\x00y")}, []string{"CreateEntries", "WriteExtents", "SetMetadata"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := treeSetup(t, []manifest.Entry{file("one")}, map[string][]byte{"one": []byte("1")})
			outside, checkOutside := makeOutside(t, b.base)
			abs := func(p string) string { return strings.ReplaceAll(p, "OUTSIDE", outside) }
			var entries []manifest.Entry
			var parts []plan.Extent
			for _, e := range tt.entries {
				e.Path, e.LinkTo = abs(e.Path), abs(e.LinkTo)
				entries = append(entries, e)
				if e.Type == manifest.TypeFile && e.LinkTo == "" {
					parts = append(parts, plan.Extent{Path: e.Path, Length: 1})
				}
			}
			tr := b.tree("target")
			if err := os.Mkdir(tr.Path, 0o755); err != nil {
				t.Fatal(err)
			}
			// WriteExtents and the later steps meet entries CreateEntries
			// refused when a manifest is crafted to split them so.
			steps := map[string]func() error{
				"CreateEntries": func() error { return tr.CreateEntries(entries) },
				"WriteExtents": func() error {
					_, err := tr.WriteExtents(t.Context(), b.repo, b.chunks[0].id, b.chunks[0].length, parts, nil)
					return err
				},
				"SetMetadata": func() error { return tr.SetMetadata(entries) },
				"MakeLinks":   func() error { return tr.MakeLinks(entries) },
				"SetDirs":     func() error { return tr.SetDirs(entries) },
			}
			for _, overwrite := range []bool{false, true} {
				tr.Overwrite = overwrite
				for _, name := range []string{"CreateEntries", "WriteExtents", "SetMetadata", "MakeLinks", "SetDirs"} {
					err := steps[name]()
					if slices.Contains(tt.refuse, name) {
						if !errors.Is(err, restore.ErrUnsafePath) {
							t.Errorf("%s (overwrite %v) = %v, want ErrUnsafePath", name, overwrite, err)
						}
					} else if errors.Is(err, restore.ErrUnsafePath) {
						t.Errorf("%s (overwrite %v) = %v, want it to ignore what is not its business", name, overwrite, err)
					}
				}
			}
			if got, err := os.ReadDir(b.base); err != nil || len(got) != 2 {
				t.Errorf("%s holds %v (%v), want only target and outside", b.base, got, err)
			}
			checkOutside()
		})
	}
}

// TestTreeSymlinkInTheWay puts symlinks to directories in the target, one
// to a directory inside it and one outside, where entries have a
// directory: every step refuses to go through them, with or without
// Overwrite, and nothing is written through either.
func TestTreeSymlinkInTheWay(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"in", "out", "deep/in", "deep/out"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			b := treeSetup(t, []manifest.Entry{{Path: "f", Type: manifest.TypeFile, Mode: 0o644}}, map[string][]byte{"f": []byte("data")})
			outside, checkOutside := makeOutside(t, b.base)
			tr := b.tree("target")
			for _, d := range []string{"inner", "deep"} {
				if err := os.MkdirAll(filepath.Join(tr.Path, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range []struct{ target, name string }{
				{"inner", "in"}, {outside, "out"}, {"../inner", "deep/in"}, {outside, "deep/out"},
			} {
				if err := os.Symlink(l.target, filepath.Join(tr.Path, filepath.FromSlash(l.name))); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Mkdir(filepath.Join(tr.Path, "inner", "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tr.Path, "inner", "victim"), []byte("inner victim"), 0o644); err != nil {
				t.Fatal(err)
			}
			// The file f exists, finished, so that hard links can name it.
			b.restoreTree(t, tr, 1)
			innerBefore := make(map[string]fs.FileInfo)
			for _, n := range []string{"inner", "inner/sub", "inner/victim"} {
				fi, err := os.Lstat(filepath.Join(tr.Path, filepath.FromSlash(n)))
				if err != nil {
					t.Fatal(err)
				}
				innerBefore[n] = fi
			}

			steps := []struct {
				name string
				run  func() error
			}{
				{"CreateEntries file", func() error {
					return tr.CreateEntries([]manifest.Entry{{Path: via + "/victim", Type: manifest.TypeFile, Mode: 0o777, Size: 3}})
				}},
				{"CreateEntries dir", func() error {
					return tr.CreateEntries([]manifest.Entry{{Path: via + "/newdir", Type: manifest.TypeDir, Mode: 0o777}})
				}},
				{"CreateEntries symlink", func() error {
					return tr.CreateEntries([]manifest.Entry{{Path: via + "/s", Type: manifest.TypeSymlink, Target: "x"}})
				}},
				{"WriteExtents", func() error {
					parts := []plan.Extent{{Path: via + "/victim", Length: 4}}
					_, err := tr.WriteExtents(t.Context(), b.repo, b.chunks[0].id, b.chunks[0].length, parts, nil)
					return err
				}},
				{"SetMetadata file", func() error {
					return tr.SetMetadata([]manifest.Entry{{Path: via + "/victim", Type: manifest.TypeFile, Mode: 0o777}})
				}},
				{"SetMetadata symlink", func() error {
					return tr.SetMetadata([]manifest.Entry{{Path: via + "/s", Type: manifest.TypeSymlink, Target: "x"}})
				}},
				{"MakeLinks at", func() error {
					return tr.MakeLinks([]manifest.Entry{{Path: via + "/h", Type: manifest.TypeFile, LinkTo: "f"}})
				}},
				{"MakeLinks to", func() error {
					return tr.MakeLinks([]manifest.Entry{{Path: "h", Type: manifest.TypeFile, LinkTo: via + "/victim"}})
				}},
				{"SetDirs", func() error {
					return tr.SetDirs([]manifest.Entry{{Path: via + "/sub", Type: manifest.TypeDir, Mode: 0o777}})
				}},
			}
			for _, overwrite := range []bool{false, true} {
				tr.Overwrite = overwrite
				for _, s := range steps {
					if err := s.run(); !errors.Is(err, restore.ErrUnsafePath) {
						t.Errorf("%s (overwrite %v) = %v, want ErrUnsafePath", s.name, overwrite, err)
					}
				}
			}
			checkOutside()
			checkFile(t, filepath.Join(tr.Path, "inner", "victim"), []byte("inner victim"))
			for n, was := range innerBefore {
				now, err := os.Lstat(filepath.Join(tr.Path, filepath.FromSlash(n)))
				if err != nil {
					t.Error(err)
				} else if now.Mode() != was.Mode() || !now.ModTime().Equal(was.ModTime()) {
					t.Errorf("%s changed: %v %v, was %v %v", n, now.Mode(), now.ModTime(), was.Mode(), was.ModTime())
				}
			}
			got := listTree(t, tr.Path)
			want := []string{".", "deep", "deep/in", "deep/out", "f", "in", "inner", "inner/sub", "inner/victim", "out"}
			if !slices.Equal(got, want) {
				t.Errorf("target holds %q, want %q", got, want)
			}
		})
	}
}

// TestTreeSymlinkAtDirEntry puts a symlink where a directory entry goes,
// to a directory outside the target or to another one inside it: SetDirs
// fails rather than change the directory it points to, and CreateEntries
// does not take it for the directory.
func TestTreeSymlinkAtDirEntry(t *testing.T) {
	t.Parallel()
	for _, to := range []string{"outside", "inside"} {
		t.Run(to, func(t *testing.T) {
			t.Parallel()
			b := treeSetup(t, nil, nil)
			outside, checkOutside := makeOutside(t, b.base)
			tr := b.tree("target")
			inner := filepath.Join(tr.Path, "inner")
			if err := os.MkdirAll(inner, 0o700); err != nil {
				t.Fatal(err)
			}
			target := map[string]string{"outside": outside, "inside": "inner"}[to]
			if err := os.Symlink(target, filepath.Join(tr.Path, "d")); err != nil {
				t.Fatal(err)
			}
			innerBefore, err := os.Stat(inner)
			if err != nil {
				t.Fatal(err)
			}
			uid, gid := owner()
			entries := []manifest.Entry{{Path: "d", Type: manifest.TypeDir, Mode: 0o777, MTime: 1, UID: uid, GID: gid}}
			if err := tr.SetDirs(entries); err == nil {
				t.Error("SetDirs on a symlink succeeded")
			}
			if err := tr.CreateEntries(entries); !errors.Is(err, restore.ErrExists) {
				t.Errorf("CreateEntries = %v, want ErrExists", err)
			}
			checkOutside()
			innerAfter, err := os.Stat(inner)
			if err != nil {
				t.Fatal(err)
			}
			wasSt, nowSt := innerBefore.Sys().(*syscall.Stat_t), innerAfter.Sys().(*syscall.Stat_t)
			if innerAfter.Mode() != innerBefore.Mode() || !innerAfter.ModTime().Equal(innerBefore.ModTime()) || nowSt.Uid != wasSt.Uid || nowSt.Gid != wasSt.Gid {
				t.Errorf("SetDirs of d changed inner, which d points to: %v %d:%d %v, was %v %d:%d %v",
					innerAfter.Mode(), nowSt.Uid, nowSt.Gid, innerAfter.ModTime(), innerBefore.Mode(), wasSt.Uid, wasSt.Gid, innerBefore.ModTime())
			}
		})
	}
}

// TestTreePlantedPartial puts a hard link to a file outside the target, or
// a symlink to another file inside it, where the restore writes a partial
// file: before the restore (the name is derived from the job ID) or after
// a step (anyone who can write to the target directory sees the name).
// Nothing may be written to the file it leads to, nor its owner, mode or
// times changed; refusing to go on is fine.
func TestTreePlantedPartial(t *testing.T) {
	t.Parallel()
	type variant struct{ after, plant string }
	var variants []variant
	for _, after := range []string{"", "CreateEntries", "WriteExtents"} {
		for _, plant := range []string{"hard link out", "symlink in"} {
			variants = append(variants, variant{after, plant})
		}
	}
	for _, v := range variants {
		after := v.after
		name := v.plant + " before the restore"
		if after != "" {
			name = v.plant + " after " + after
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			uid, gid := owner()
			entries := []manifest.Entry{
				{Path: ".", Type: manifest.TypeDir, Mode: 0o755, UID: os.Geteuid(), GID: os.Getegid()},
				{Path: "f", Type: manifest.TypeFile, Mode: 0o4755, UID: uid, GID: gid},
			}
			b := treeSetup(t, entries, map[string][]byte{"f": []byte("restored content")})
			outside, checkOutside := makeOutside(t, b.base)
			tr := b.tree("target")
			unlockDirs(t, tr.Path)
			if err := os.Mkdir(tr.Path, 0o755); err != nil {
				t.Fatal(err)
			}
			keep := filepath.Join(tr.Path, "keep") // a file of the target's owner
			if err := os.WriteFile(keep, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
			keepBefore, err := os.Stat(keep)
			if err != nil {
				t.Fatal(err)
			}
			plant := func() {
				// The partial name, as a restore of the same job elsewhere makes it.
				probe := restore.Tree{Path: filepath.Join(b.base, "probe"), JobID: tr.JobID}
				if err := probe.CreateEntries(b.entries); err != nil {
					t.Fatal(err)
				}
				names := partials(t, probe.Path)
				if len(names) != 1 {
					t.Fatalf("partial files %q, want one", names)
				}
				p := filepath.Join(tr.Path, filepath.FromSlash(names[0]))
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				if v.plant == "symlink in" {
					if err := os.Symlink("keep", p); err != nil {
						t.Fatal(err)
					}
				} else if err := os.Link(filepath.Join(outside, "victim"), p); err != nil {
					t.Fatal(err)
				}
			}
			if after == "" {
				plant()
			}
			for _, s := range b.steps(t, tr) {
				if err := s.run(); err != nil {
					t.Logf("%s: %v", s.name, err) // refusing is fine
					break
				}
				if s.name == after {
					plant()
				}
			}
			victim := filepath.Join(outside, "victim")
			if got, err := os.ReadFile(victim); err != nil || string(got) != "do not touch" {
				t.Errorf("the restore wrote %q (%v) through a hard link into %s", got, err, victim)
			}
			if fi, err := os.Stat(victim); err == nil && fi.Mode() != 0o644 {
				t.Errorf("the restore changed the mode of %s to %v through a hard link", victim, fi.Mode())
			}
			checkOutside()
			if got, err := os.ReadFile(keep); err != nil || string(got) != "keep me" {
				t.Errorf("the restore wrote %q (%v) through a symlink into %s", got, err, keep)
			}
			if fi, err := os.Stat(keep); err != nil {
				t.Error(err)
			} else if fi.Mode() != keepBefore.Mode() || !fi.ModTime().Equal(keepBefore.ModTime()) {
				t.Errorf("the restore changed %s through a symlink: %v %v, was %v %v", keep, fi.Mode(), fi.ModTime(), keepBefore.Mode(), keepBefore.ModTime())
			}
		})
	}
}

// TestTreeSwappedPartial replaces a partial file, after its data was
// written, by another file of the same name, as anyone who can write to
// the directory can: the restore must not give that file the entry's owner
// and mode (here setuid) and move it into place as if it were the
// restored file.
func TestTreeSwappedPartial(t *testing.T) {
	t.Parallel()
	uid, gid := owner()
	entries := []manifest.Entry{{Path: "f", Type: manifest.TypeFile, Mode: 0o4755, UID: uid, GID: gid}}
	b := treeSetup(t, entries, map[string][]byte{"f": []byte("restored content")})
	tr := b.tree("target")
	unlockDirs(t, tr.Path)
	if err := tr.CreateEntries(b.entries); err != nil {
		t.Fatal(err)
	}
	if err := b.writeExtents(t, tr); err != nil {
		t.Fatal(err)
	}
	names := partials(t, tr.Path)
	if len(names) != 1 {
		t.Fatalf("partial files %q, want one", names)
	}
	if os.Geteuid() != 0 {
		t.Skip("a file swapped in by the restoring user itself is not defended against (that user can change the restored files anyway); run as root to plant another user's file")
	}
	planted := filepath.Join(tr.Path, "planted")
	if err := os.WriteFile(planted, []byte("not from the backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, 54321, 54321); err != nil { // another user's file
		t.Fatal(err)
	}
	if err := os.Rename(planted, filepath.Join(tr.Path, filepath.FromSlash(names[0]))); err != nil {
		t.Fatal(err)
	}
	if err := tr.SetMetadata(b.entries); err != nil {
		return // refusing is fine
	}
	p := filepath.Join(tr.Path, "f")
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil {
		t.Fatal(err)
	} else if string(got) != "restored content" {
		t.Errorf("SetMetadata succeeded and moved a file that is not the restored one into place as %s: %q, mode %v", p, got, fi.Mode())
	}
}

// TestTreeAbort stops a restore half way: Abort removes this job's partial
// files and keeps files already moved into place, other jobs' partial
// files and the user's files.
func TestTreeAbort(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	tr := b.tree("target")
	unlockDirs(t, tr.Path)
	if err := tr.CreateEntries(b.entries); err != nil {
		t.Fatal(err)
	}
	if err := b.writeExtents(t, tr); err != nil {
		t.Fatal(err)
	}
	// Finish d/a.txt only.
	done := b.entries[:3]
	if done[2].Path != "d/a.txt" {
		t.Fatalf("entry 2 is %s", done[2].Path)
	}
	if err := tr.SetMetadata(done); err != nil {
		t.Fatal(err)
	}
	other := restore.Tree{Path: tr.Path, JobID: "job-2", Keep: []string{"job-1"}} // both running
	if err := other.CreateEntries([]manifest.Entry{{Path: "d/big", Type: manifest.TypeFile, Mode: 0o600, Size: 10}}); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(tr.Path, "notes"+partTag+"mine")
	if err := os.WriteFile(user, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	mine := partials(t, tr.Path)
	var files int
	for _, e := range b.entries {
		if e.Type == manifest.TypeFile && e.LinkTo == "" {
			files++
		}
	}
	// This job's partial files but d/a.txt's, job-2's and the user's.
	if want := files - 1 + 1 + 1; len(mine) != want {
		t.Fatalf("partial files before Abort: %q, want %d", mine, want)
	}

	for range 2 {
		if err := tr.Abort(); err != nil {
			t.Fatal(err)
		}
	}
	left := partials(t, tr.Path)
	if len(left) != 2 || !slices.Contains(left, "notes"+partTag+"mine") || !strings.HasPrefix(left[0], "d/.big"+partTag) {
		t.Errorf("partial files after Abort: %q, want job-2's of d/big and the user's", left)
	}
	checkFile(t, filepath.Join(tr.Path, "d", "a.txt"), b.data["d/a.txt"])
	checkFile(t, user, []byte("mine"))
	for _, e := range b.entries {
		if e.Type == manifest.TypeDir {
			if fi, err := os.Stat(filepath.Join(tr.Path, filepath.FromSlash(e.Path))); err != nil || !fi.IsDir() {
				t.Errorf("%s: %v after Abort, want the directory kept", e.Path, err)
			}
		}
	}

	if err := other.Abort(); err != nil {
		t.Fatal(err)
	}
	if left := partials(t, tr.Path); !slices.Equal(left, []string{"notes" + partTag + "mine"}) {
		t.Errorf("partial files after both Aborts: %q, want only the user's", left)
	}
	if err := (restore.Tree{Path: filepath.Join(b.base, "never"), JobID: "job-1"}).Abort(); err != nil {
		t.Errorf("Abort of a target never made = %v, want nil", err)
	}
}

// TestTreeWriteExtentsChecks checks that WriteExtents writes nothing from a
// chunk whose length is not the manifest's, or a piece outside it.
func TestTreeWriteExtentsChecks(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	tr := b.tree("target")
	unlockDirs(t, tr.Path)
	if err := tr.CreateEntries(b.entries); err != nil {
		t.Fatal(err)
	}
	c := b.chunks[0]
	if _, err := tr.WriteExtents(t.Context(), b.repo, c.id, c.length-1, c.parts, nil); err == nil {
		t.Error("WriteExtents with the wrong chunk length succeeded")
	}
	bad := slices.Clone(c.parts)
	bad[0].ChunkOffset = c.length - bad[0].Length + 1
	if _, err := tr.WriteExtents(t.Context(), b.repo, c.id, c.length, bad, nil); err == nil {
		t.Error("WriteExtents with a piece past the chunk's end succeeded")
	}
	// Offsets whose sums overflow: never a panic, never a write.
	for _, p := range []plan.Extent{
		{Path: c.parts[0].Path, ChunkOffset: math.MaxInt64 - 5, Length: 10},
		{Path: c.parts[0].Path, ChunkOffset: 0, Length: math.MaxInt64},
		{Path: c.parts[0].Path, FileOffset: math.MaxInt64 - 1, Length: 10},
	} {
		if _, err := tr.WriteExtents(t.Context(), b.repo, c.id, c.length, []plan.Extent{p}, nil); err == nil {
			t.Errorf("WriteExtents of %+v succeeded", p)
		}
	}
	for _, p := range partials(t, tr.Path) {
		data, err := os.ReadFile(filepath.Join(tr.Path, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !chunk.IsZero(data) {
			t.Errorf("%s was written", p)
		}
	}
}

// TestTreeSweepsDebris: partial files an interrupted restore of another job
// left (killed before it moved its files into place or removed them) are
// removed by the next restore into the same directories, which leaves only
// whole files behind; files of the user's are not touched, whatever their
// names.
func TestTreeSweepsDebris(t *testing.T) {
	t.Parallel()
	b := sampleSetup(t)
	dead := b.tree("target")
	dead.JobID = "job-0"
	unlockDirs(t, dead.Path)
	if err := dead.CreateEntries(b.entries); err != nil {
		t.Fatal(err)
	}
	if err := b.writeExtents(t, dead); err != nil {
		t.Fatal(err)
	}
	left := partials(t, dead.Path)
	if len(left) == 0 {
		t.Fatal("the interrupted restore left no partial files to sweep")
	}
	user := filepath.Join(dead.Path, "d", ".notes.bulkpart-mine")
	if err := os.WriteFile(user, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := b.tree("target")
	tr.Overwrite = true
	b.restoreTree(t, tr, 1)
	if got := partials(t, tr.Path); !slices.Equal(got, []string{"d/.notes.bulkpart-mine"}) {
		t.Errorf("partial files after a later restore: %q, want only the user's file", got)
	}
	checkFile(t, user, []byte("mine"))
	// Without the user's file (and the mtime its removal changes), the
	// target is exactly the tree.
	if err := os.Remove(user); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.entries {
		if e.Path == "d" {
			mt := time.Unix(0, e.MTime)
			if err := os.Chtimes(filepath.Join(tr.Path, "d"), mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.checkTree(t, tr.Path, b.entries)
}

// TestTreeDeep restores a tree 3,000 directories deep, deeper than a path
// the kernel takes whole (PATH_MAX): every level is reached from its
// parent's descriptor, one open each.
func TestTreeDeep(t *testing.T) {
	t.Parallel()
	const depth = 3000
	entries := []manifest.Entry{{Path: ".", Type: manifest.TypeDir, Mode: 0o755}}
	p := ""
	for range depth {
		p = path.Join(p, "d")
		entries = append(entries, manifest.Entry{Path: p, Type: manifest.TypeDir, Mode: 0o755})
	}
	bottom := path.Join(p, "f")
	entries = append(entries, manifest.Entry{Path: bottom, Type: manifest.TypeFile, Mode: 0o644})
	b := treeSetup(t, entries, map[string][]byte{bottom: []byte("at the bottom")})
	tr := b.tree("target")
	b.restoreTree(t, tr, 1)
	dirs, err := safefs.Open(tr.Path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer dirs.Release()
	f, err := dirs.Open(bottom, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || string(got) != "at the bottom" {
		t.Errorf("the deepest file holds %q, %v", got, err)
	}
}

// TestTreeSparse: runs of zeros in a file's content are not written, so a
// file that was sparse is sparse again (st_blocks), with the same bytes.
// One part starts at an offset that is not block-aligned.
func TestTreeSparse(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	first := make([]byte, 6000) // a chunk packing the file's first 6000 bytes: zeros but one
	first[10] = 'x'
	second := make([]byte, size-6000) // the rest: zeros but 4 KiB of data at file offset 306000
	for i := range 4096 {
		second[300000+i] = byte(i*7 + 1)
	}
	want := append(slices.Clone(first), second...)

	repo, sealer, _ := newRepo(t)
	var chunks []treeChunk
	for _, raw := range [][]byte{first, second} {
		id := chunk.Sum(raw)
		if err := repo.PutChunk(t.Context(), id, sealer.Seal(nil, id, raw)); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, treeChunk{id: id, length: int64(len(raw))})
	}
	chunks[0].parts = []plan.Extent{{Path: "sparse", FileOffset: 0, Length: 6000}}
	chunks[1].parts = []plan.Extent{{Path: "sparse", FileOffset: 6000, Length: size - 6000}}
	uid, gid := owner()
	b := &treeBundle{repo: repo, base: t.TempDir(), chunks: chunks, entries: []manifest.Entry{
		{Path: ".", Type: manifest.TypeDir, Mode: 0o755, UID: uid, GID: gid},
		{Path: "sparse", Type: manifest.TypeFile, Mode: 0o644, UID: uid, GID: gid, Size: size},
	}}

	// The file system must keep holes for the test to mean anything.
	probe := filepath.Join(b.base, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(probe, size); err != nil {
		t.Fatal(err)
	}
	if blocks := allocated(t, probe); blocks >= size {
		t.Skipf("%s keeps no holes: a truncated file of %d bytes has %d allocated", b.base, size, blocks)
	}

	tr := b.tree("out")
	b.restoreTree(t, tr, 1)
	p := filepath.Join(tr.Path, "sparse")
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the restored file's bytes differ from the backed-up ones")
	}
	// Block 0 (the 'x') and the two blocks the 4 KiB of data straddle.
	if blocks := allocated(t, p); blocks > 3*4096 {
		t.Errorf("the restored sparse file has %d bytes allocated, want at most %d (its three blocks holding data)", blocks, 3*4096)
	}
}

// allocated returns the bytes the file at p has allocated on disk.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
