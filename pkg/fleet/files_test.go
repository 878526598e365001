package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// treeChunk is the chunk size of the tree tests: small, so that packing,
// splitting and sizes around the chunk size are all exercised.
const treeChunk = 64 << 10

// makeTree builds a tree with what a files-mode backup must get right:
// nested and empty directories, empty files, files at and around the chunk
// size, many small files, unicode and space names, symlinks (relative,
// absolute, dangling), hard links, special permission bits, a read-only
// directory, other owners (as root) and fixed old mtimes.
func makeTree(t *testing.T, root string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b { // compressible but not trivial
			b[i] = "abcdefgh\n"[rng.IntN(9)]
		}
		return b
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, content []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, content, 0o600))
		must(os.Chmod(p, mode))
	}
	must(os.MkdirAll(filepath.Join(root, "empty/deeper/still"), 0o755))
	write("zero-length", nil, 0o644)
	for _, n := range []int{treeChunk - 1, treeChunk, treeChunk + 1, 2*treeChunk + 7, 5*treeChunk + 123} {
		write(fmt.Sprintf("sizes/%d.bin", n), data(n), 0o644)
	}
	for i := range 300 {
		write(fmt.Sprintf("many/d%02d/f%03d.txt", i%7, i), data(rng.IntN(3000)), 0o644)
	}
	write("names/ünïcødé 文件.txt", data(100), 0o644)
	write("names/with space/and  two", data(10), 0o640)
	write("names/-dash", []byte("dash"), 0o600)
	write("perms/setuid", data(20), 0o4755)
	write("perms/exec", data(20), 0o755)
	write("perms/private", data(20), 0o600)
	must(os.Mkdir(filepath.Join(root, "perms/sticky"), 0o755))
	must(os.Chmod(filepath.Join(root, "perms/sticky"), 0o1777))
	write("readonly/inside.txt", data(50), 0o444)
	write("links/target.txt", data(70), 0o644)
	must(os.Symlink("target.txt", filepath.Join(root, "links/rel")))
	must(os.Symlink("/etc/hostname", filepath.Join(root, "links/abs")))
	must(os.Symlink("does/not/exist", filepath.Join(root, "links/dangling")))
	must(os.Symlink("../sizes", filepath.Join(root, "links/dir-link")))
	write("hard/one", data(5000), 0o644)
	must(os.Link(filepath.Join(root, "hard/one"), filepath.Join(root, "hard/two")))
	must(os.MkdirAll(filepath.Join(root, "hard/sub"), 0o755))
	must(os.Link(filepath.Join(root, "hard/one"), filepath.Join(root, "hard/sub/three")))
	write("hard/big-a", data(3*treeChunk), 0o644)
	must(os.Link(filepath.Join(root, "hard/big-a"), filepath.Join(root, "hard/big-b")))
	if os.Geteuid() == 0 {
		must(os.Chown(filepath.Join(root, "perms/private"), 1234, 5678))
		must(os.Lchown(filepath.Join(root, "links/rel"), 4321, 8765))
		must(os.Chown(filepath.Join(root, "empty"), 99, 98))
	}
	// Old, distinct mtimes, set deepest first so setting a directory's is
	// not undone by work inside it; the read-only bit goes on last.
	var paths []string
	must(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		mt := time.Date(2020, 1, 2, 3, 4, 5, i*1000+7, time.UTC)
		ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		must(lutimes(paths[i], ts))
	}
	must(os.Chmod(filepath.Join(root, "readonly"), 0o555))
	mt := time.Date(2019, 5, 6, 7, 8, 9, 10, time.UTC)
	must(os.Chtimes(filepath.Join(root, "readonly"), mt, mt))
}

// lutimes sets the times of path, of the link itself for a symlink.
func lutimes(path string, ts []unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// fileInfo is what the tree comparison checks of one entry.
type fileInfo struct {
	Type   string
	Mode   uint32
	UID    uint32
	GID    uint32
	MTime  int64
	Size   int64
	Nlink  uint64
	Target string
	Sum    [32]byte
}

// describeTree returns every entry under root by relative path.
func describeTree(t *testing.T, root string) map[string]fileInfo {
	t.Helper()
	out := make(map[string]fileInfo)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		info := fileInfo{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
		switch {
		case fi.Mode().IsRegular():
			info.Type, info.Size, info.Nlink = "file", fi.Size(), uint64(st.Nlink)
			info.Sum = fileHash(t, p)
		case fi.IsDir():
			info.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			info.Type = "symlink"
			info.Mode = 0 // not meaningful on Linux
			if info.Target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			info.Type = "special"
		}
		out[rel] = info
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails unless the trees at want and got hold the same entries
// with the same content and metadata (special files excepted: they are not
// restored). Owners are compared only as root
// (only root restores them); root's own metadata only if withRoot.
func sameTree(t *testing.T, want, got string, withRoot bool) {
	t.Helper()
	compareTrees(t, want, got, withRoot, true)
}

// compareTrees is sameTree, comparing link counts only if links.
func compareTrees(t *testing.T, want, got string, withRoot, links bool) {
	t.Helper()
	w, g := describeTree(t, want), describeTree(t, got)
	root := os.Geteuid() == 0
	for p, wi := range w {
		gi, ok := g[p]
		if !ok {
			if wi.Type != "special" { // never restored
				t.Errorf("%s: missing from the restored tree", p)
			}
			continue
		}
		if p == "." && !withRoot {
			continue
		}
		if !root {
			wi.UID, wi.GID, gi.UID, gi.GID = 0, 0, 0, 0
		}
		if !links {
			wi.Nlink, gi.Nlink = 0, 0
		}
		if wi != gi {
			t.Errorf("%s differs:\nwant %+v\n got %+v", p, wi, gi)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: restored, but not in the source", p)
		}
	}
}

func (b *bundle) backupFiles(t testing.TB, src, repo string) *queue.Event {
	t.Helper()
	id := uuid.NewString()
	return b.do(t, queue.SubjectRequestBackup, &queue.BackupRequest{
		V: queue.MessageVersion, JobID: id, Source: queue.Endpoint{Host: b.fleet.Host(), Path: src},
		Repo: repo, ChunkSize: treeChunk, Mode: "files",
	}, id)
}

func (b *bundle) restorePaths(t testing.TB, repo, snap, target string, overwrite bool, paths ...string) *queue.Event {
	t.Helper()
	id := uuid.NewString()
	return b.do(t, queue.SubjectRequestRestore, &queue.RestoreRequest{
		V: queue.MessageVersion, JobID: id, Repo: repo, Snapshot: snap, Paths: paths, Overwrite: overwrite,
		Targets: []queue.Endpoint{{Host: b.fleet.Host(), Path: target}},
	}, id)
}

func succeeded(t *testing.T, ev *queue.Event, what string) {
	t.Helper()
	if ev.State != queue.StateSucceeded {
		t.Fatalf("%s: %s: %s", what, ev.State, ev.Error)
	}
}

// TestFilesBackupRestore backs up a tree with every kind of entry through
// the fleet, restores it twice in parallel targets, and compares content
// and metadata entry by entry.
func TestFilesBackupRestore(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	if err := syscall.Mkfifo(filepath.Join(src, "a-fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := setup(t, storeurl.S3Options{})
	repo := filepath.Join(dir, "repo")
	ev := b.backupFiles(t, src, repo)
	succeeded(t, ev, "backup")
	if ev.Mode != "files" || ev.Stats.Warnings != 1 || len(ev.Warnings) != 1 || !strings.Contains(ev.Warnings[0], "a-fifo") {
		t.Fatalf("backup: mode %q, %d warnings %q; want files mode and one warning for the FIFO", ev.Mode, ev.Stats.Warnings, ev.Warnings)
	}
	if ev.Stats.NewFiles != ev.Stats.Files-3 { // 3 hard links are not files of their own
		t.Errorf("first backup: %d new of %d files, want all but the 3 hard links", ev.Stats.NewFiles, ev.Stats.Files)
	}
	// 300 small files must share chunks: far fewer chunks than files.
	if ev.Stats.Chunks >= ev.Stats.Files/4 {
		t.Errorf("%d chunks for %d files: small files are not packed", ev.Stats.Chunks, ev.Stats.Files)
	}

	out1, out2 := filepath.Join(dir, "out1"), filepath.Join(dir, "out2")
	id := uuid.NewString()
	rev := b.do(t, queue.SubjectRequestRestore, &queue.RestoreRequest{
		V: queue.MessageVersion, JobID: id, Repo: repo, Snapshot: ev.SnapshotID,
		Targets: []queue.Endpoint{{Host: b.fleet.Host(), Path: out1}, {Host: b.fleet.Host(), Path: out2}},
	}, id)
	succeeded(t, rev, "restore")
	if len(rev.Warnings) != 1 || !strings.Contains(rev.Warnings[0], "a-fifo: not restored") {
		t.Errorf("restore warnings %q, want the FIFO not restored", rev.Warnings)
	}
	sameTree(t, src, out1, true)
	sameTree(t, src, out2, true)

	// Restoring over an existing tree is refused, and harms nothing.
	rev = b.restorePaths(t, repo, ev.SnapshotID, out1, false)
	if rev.State != queue.StateFailed || !strings.Contains(rev.Error, "exists") {
		t.Fatalf("restore over an existing tree: %s %q, want failed naming an existing file", rev.State, rev.Error)
	}
	sameTree(t, src, out1, true)
	leftovers, _ := filepath.Glob(filepath.Join(out1, "*", ".*bulkpart*"))
	if len(leftovers) > 0 {
		t.Errorf("failed restore left partial files: %q", leftovers)
	}
	// With --overwrite, changed files are put back.
	if err := os.WriteFile(filepath.Join(out1, "sizes", fmt.Sprint(treeChunk)+".bin"), []byte("scribbled"), 0o644); err != nil {
		t.Fatal(err)
	}
	succeeded(t, b.restorePaths(t, repo, ev.SnapshotID, out1, true), "restore --overwrite")
	sameTree(t, src, out1, true)
}

// copyTree copies a tree with everything cp -a keeps.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
}

// TestFilesIncremental changes a few files, adds and deletes some, and
// checks that the second backup reads and stores only what changed, and
// that both snapshots restore to their own trees.
func TestFilesIncremental(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	if err := os.Chmod(filepath.Join(src, "readonly"), 0o755); err != nil { // so the test can change the tree
		t.Fatal(err)
	}
	b := setup(t, storeurl.S3Options{})
	repo := filepath.Join(dir, "repo")
	first := b.backupFiles(t, src, repo)
	succeeded(t, first, "first backup")
	before := filepath.Join(dir, "before")
	copyTree(t, src, before)

	// Unchanged tree: nothing read, nothing stored.
	same := b.backupFiles(t, src, repo)
	succeeded(t, same, "unchanged backup")
	if same.Stats.ReadBytes != 0 || same.Stats.NewBytes != 0 || same.Stats.UnchangedFiles != first.Stats.NewFiles {
		t.Errorf("unchanged tree: read %d bytes, stored %d new, %d unchanged files of %d; want 0, 0, all",
			same.Stats.ReadBytes, same.Stats.NewBytes, same.Stats.UnchangedFiles, first.Stats.NewFiles)
	}

	// Change two files, touch one, add three, delete two.
	big := filepath.Join(src, "sizes", fmt.Sprint(5*treeChunk+123)+".bin")
	f, err := os.OpenFile(big, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("CHANGED"), 2*treeChunk+10); err != nil { // one chunk of five
		t.Fatal(err)
	}
	f.Close()
	small := filepath.Join(src, "many/d01/f008.txt")
	if err := os.WriteFile(small, []byte("new content of a small file"), 0o644); err != nil {
		t.Fatal(err)
	}
	touched := filepath.Join(src, "perms/exec")
	now := time.Now()
	if err := os.Chtimes(touched, now, now); err != nil {
		t.Fatal(err)
	}
	added := map[string]int{"added/a.txt": 10, "added/b.bin": 3 * treeChunk, "many/d00/new.txt": 1}
	var addedBytes int64
	for p, n := range added {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, bytes.Repeat([]byte{byte(n)}, n), 0o644); err != nil {
			t.Fatal(err)
		}
		addedBytes += int64(n)
	}
	for _, p := range []string{"many/d02/f009.txt", "names/-dash"} {
		if err := os.Remove(filepath.Join(src, p)); err != nil {
			t.Fatal(err)
		}
	}
	second := b.backupFiles(t, src, repo)
	succeeded(t, second, "second backup")
	st := second.Stats
	if st.NewFiles != 3 || st.ChangedFiles != 3 || st.UnchangedFiles != first.Stats.NewFiles-2-3 {
		t.Errorf("second backup: %d new, %d changed, %d unchanged files; want 3, 3, %d", st.NewFiles, st.ChangedFiles, st.UnchangedFiles, first.Stats.NewFiles-5)
	}
	smallInfo, _ := os.Stat(small)
	touchedInfo, _ := os.Stat(touched)
	wantRead := addedBytes + (5*treeChunk + 123) + smallInfo.Size() + touchedInfo.Size()
	if st.ReadBytes != wantRead {
		t.Errorf("second backup read %d bytes, want %d (the changed and added files only)", st.ReadBytes, wantRead)
	}
	// The changed large file shares its four unchanged chunks: what is new
	// is far less than what was read.
	if st.NewBytes >= st.ReadBytes/2 {
		t.Errorf("second backup stored %d new bytes of %d read: unchanged chunks of the changed file were stored again", st.NewBytes, st.ReadBytes)
	}

	out1, out2 := filepath.Join(dir, "out1"), filepath.Join(dir, "out2")
	succeeded(t, b.restorePaths(t, repo, first.SnapshotID, out1, false), "restore first")
	succeeded(t, b.restorePaths(t, repo, second.SnapshotID, out2, false), "restore second")
	sameTree(t, before, out1, true)
	sameTree(t, src, out2, true)
}

// countingStore counts the chunk objects read from a store, but for the
// directory objects listed in trees (read to load a snapshot).
type countingStore struct {
	store.Store
	chunkGets *atomic.Int64
	trees     *sync.Map
}

func (s countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if _, tree := s.trees.Load(key); strings.HasPrefix(key, repository.ChunksPrefix) && !tree {
		s.chunkGets.Add(1)
	}
	return s.Store.Get(ctx, key)
}

// TestFilesPartialRestore restores one file and one subtree and counts the
// chunk objects read: exactly those holding the selected files.
func TestFilesPartialRestore(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	var (
		gets  atomic.Int64
		trees sync.Map
	)
	repos := repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		st, err := storeurl.Open(ctx, repo, storeurl.Options{Create: create})
		return countingStore{Store: st, chunkGets: &gets, trees: &trees}, err
	}, repository.OpenOptions{CreatePlaintext: true})
	f, err := fleet.Start(t.Context(), fleet.Config{Dir: t.TempDir(), Repos: repos, Compressors: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b := connect(t, f, repos)
	repo := filepath.Join(dir, "repo")
	ev := b.backupFiles(t, src, repo)
	succeeded(t, ev, "backup")
	r, err := repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.LoadSnapshot(t.Context(), ev.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range snap.Trees {
		id, err := chunk.ParseID(tr.Hash)
		if err != nil {
			t.Fatal(err)
		}
		trees.Store(repository.ChunkKey(id), true)
	}
	chunksOf := func(paths ...string) int {
		for i, p := range paths {
			paths[i] = manifest.TreePath(snap.Path, p)
		}
		sel, err := snap.Select(paths)
		if err != nil {
			t.Fatal(err)
		}
		seen := make(map[int]bool)
		for _, e := range sel { // hard links share their content: no double count
			for _, x := range e.Content {
				if !snap.Chunks[x.Chunk].Zero {
					seen[x.Chunk] = true
				}
			}
		}
		return len(seen)
	}
	tests := []struct {
		name  string
		paths []string
		want  []string // entries expected under the target besides the directories leading to them
	}{
		{"one small file", []string{"many/d03/f010.txt"}, []string{"many/d03/f010.txt"}},
		{"one large file", []string{"sizes/" + fmt.Sprint(2*treeChunk+7) + ".bin"}, []string{"sizes/" + fmt.Sprint(2*treeChunk+7) + ".bin"}},
		{"a subtree and a link", []string{"names", "links/rel"}, []string{"names", "links/rel"}},
		{"one name of a hard link", []string{"hard/sub/three"}, []string{"hard/sub/three"}},
		// As a CI client's request may name it: the path on the host.
		{"a path as it was on the host", []string{filepath.Join(src, "many/d04/f011.txt")}, []string{"many/d04/f011.txt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
			gets.Store(0)
			succeeded(t, b.restorePaths(t, repo, ev.SnapshotID, target, false, tc.paths...), "partial restore")
			want := chunksOf(slices.Clone(tc.paths)...)
			if got := gets.Load(); got != int64(want) || want >= len(snap.Chunks) {
				t.Errorf("read %d chunk objects, want exactly %d (of %d in the snapshot)", got, want, len(snap.Chunks))
			}
			for _, p := range tc.want {
				// A hard link restored without its other names is a file
				// of its own: same content, one link.
				compareTrees(t, filepath.Join(src, p), filepath.Join(target, p), true, false)
			}
			// Nothing else: only the selected entries and their directories.
			got := describeTree(t, target)
			for p := range got {
				ok := p == "."
				for _, w := range tc.want {
					ok = ok || p == w || strings.HasPrefix(p, w+"/") || strings.HasPrefix(w, p+"/")
				}
				if !ok {
					t.Errorf("%s restored, but not selected", p)
				}
			}
		})
	}
	rev := b.restorePaths(t, repo, ev.SnapshotID, filepath.Join(dir, "none"), false, "no/such/file")
	if rev.State != queue.StateFailed || !strings.Contains(rev.Error, `"no/such/file" is not in snapshot`) {
		t.Errorf("restore of a missing path: %s %q, want failed naming it", rev.State, rev.Error)
	}
}

// connect returns a test client of a running fleet.
func connect(t testing.TB, f *fleet.Fleet, repos *repository.Cache) *bundle {
	t.Helper()
	nc, err := f.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{fleet: f, js: js, repos: repos}
}

// saveRawSnapshot writes a manifest into the repository without the
// validation SaveSnapshot does, as an attacker with write access could.
func saveRawSnapshot(t *testing.T, repoDir string, snap *manifest.Snapshot) {
	t.Helper()
	flat := *snap // the flat form of manifest versions 2 and 3
	flat.Version, flat.Root = 3, nil
	js, err := json.Marshal(&flat)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	st, err := dirstore.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), repository.SnapshotsPrefix+snap.ID, sealer.Seal(nil, chunk.Sum(js), js)); err != nil {
		t.Fatal(err)
	}
}

// TestFilesRestoreRejectsEscapes hand-crafts manifests whose paths leave
// the target (absolute, "..", through a symlink) and checks that the
// restore fails naming the problem and writes nothing outside the target.
func TestFilesRestoreRejectsEscapes(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := setup(t, storeurl.S3Options{})
	repo := filepath.Join(dir, "repo")
	ev := b.backupFiles(t, src, repo)
	succeeded(t, ev, "backup")
	r, err := b.repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	good, err := r.LoadSnapshot(t.Context(), ev.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	file := good.Files[1] // "f", with content
	dirEntry := manifest.Entry{Type: manifest.TypeDir, Mode: 0o755}
	with := func(p string, e manifest.Entry) manifest.Entry { e.Path = p; return e }
	tests := []struct {
		name    string
		entries []manifest.Entry
		want    string
	}{
		{"absolute", []manifest.Entry{with("/tmp/escaped", file)}, "absolute"},
		{"dot-dot", []manifest.Entry{with("../escaped", file)}, `".." element`},
		{"dot-dot inside", []manifest.Entry{with("a", dirEntry), with("a/../../escaped", file)}, "not clean"},
		{"through a symlink", []manifest.Entry{
			{Path: "l", Type: manifest.TypeSymlink, Target: ".."},
			with("l/escaped", file),
		}, "lies under a symlink"},
		{"through a symlink to an absolute dir", []manifest.Entry{
			{Path: "l", Type: manifest.TypeSymlink, Target: dir},
			with("l/escaped", file),
		}, "lies under a symlink"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := *good
			snap.ID = repository.NewSnapshotID()
			snap.Files = append([]manifest.Entry{good.Files[0]}, tc.entries...)
			saveRawSnapshot(t, repo, &snap)
			target := filepath.Join(dir, "target-"+strings.ReplaceAll(tc.name, " ", "-"))
			rev := b.restorePaths(t, repo, snap.ID, target, true)
			if rev.State != queue.StateFailed || !strings.Contains(rev.Error, tc.want) {
				t.Fatalf("restore: %s %q, want failed with %q", rev.State, rev.Error, tc.want)
			}
			for _, p := range []string{filepath.Join(dir, "escaped"), "/tmp/escaped", filepath.Join(filepath.Dir(dir), "escaped")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written outside the target", p)
				}
			}
		})
	}
}

// TestFilesChangingAndUnreadable backs up a tree in which one file grows
// all the while: the backup completes, the file is listed with a warning,
// and the rest restores exactly.
func TestFilesChangingAndUnreadable(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	if err := os.Chmod(filepath.Join(src, "readonly"), 0o755); err != nil {
		t.Fatal(err)
	}
	growing := filepath.Join(src, "growing.log")
	if err := os.WriteFile(growing, []byte("start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(src, "secret")
	if err := os.WriteFile(unreadable, []byte("secret"), 0o000); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	ctx, stopGrowing := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		f, err := os.OpenFile(growing, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for ctx.Err() == nil {
			fmt.Fprintf(f, "%s line\n", time.Now())
			time.Sleep(time.Millisecond) // a file that keeps growing, not too fast
		}
	})
	b := setup(t, storeurl.S3Options{})
	repo := filepath.Join(dir, "repo")
	ev := b.backupFiles(t, src, repo)
	stopGrowing()
	wg.Wait()
	succeeded(t, ev, "backup")
	wantWarnings := 1
	if !root {
		wantWarnings = 2 // root reads a mode-000 file anyway
	}
	if ev.Stats.Warnings != wantWarnings {
		t.Fatalf("%d warnings %q, want %d", ev.Stats.Warnings, ev.Warnings, wantWarnings)
	}
	if !strings.Contains(strings.Join(ev.Warnings, "\n"), "growing.log: changed") {
		t.Errorf("warnings %q do not name growing.log as changed", ev.Warnings)
	}
	r, err := b.repos.Get(t.Context(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.LoadSnapshot(t.Context(), ev.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range snap.Files {
		if e.Path == "secret" && !root && (!e.Unread || e.Warning == "") {
			t.Errorf("unreadable file recorded as %+v, want unread with a warning", e)
		}
		if e.Path == "growing.log" && e.Warning == "" {
			t.Errorf("growing file recorded without a warning: %+v", e)
		}
	}
	out := filepath.Join(dir, "out")
	rev := b.restorePaths(t, repo, ev.SnapshotID, out, false)
	succeeded(t, rev, "restore")
	if err := os.Remove(growing); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(out, "growing.log")); err != nil {
		t.Fatalf("growing.log (changed while read) not restored: %v", err)
	}
	if !root {
		os.Remove(unreadable)
	}
	sameTree(t, src, out, false)
}
