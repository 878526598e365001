package source_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// put writes data to root/rel, creating its directory, with the exact mode
// (whatever the umask).
func put(t *testing.T, root, rel string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	chmod(t, p, mode)
	return p
}

// chmod sets mode, setuid, setgid and sticky bits included.
func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := syscall.Chmod(p, uint32(mode)); err != nil {
		t.Fatal(err)
	}
}

func mkdirMode(t *testing.T, root, rel string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	chmod(t, p, mode)
	return p
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// scanAll runs ScanTree to the end and returns what it emitted and warned.
func scanAll(t *testing.T, root string) ([]manifest.Entry, []string) {
	t.Helper()
	var entries []manifest.Entry
	var warnings []string
	err := source.ScanTree(t.Context(), root, func(e manifest.Entry) error {
		entries = append(entries, e)
		return nil
	}, func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatalf("ScanTree(%s): %v", root, err)
	}
	return entries, warnings
}

// makeScanTree builds a tree with every kind of entry ScanTree records and
// returns its root.
func makeScanTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	mkdirMode(t, root, ".", 0o750)
	mkdirMode(t, root, "a", 0o2755) // setgid directory
	put(t, root, "a/b.txt", []byte("hello"), 0o644)
	if err := os.Link(filepath.Join(root, "a/b.txt"), filepath.Join(root, "a/hard")); err != nil {
		t.Fatal(err)
	}
	put(t, root, "a/orig", []byte("linked from a name walked earlier"), 0o640)
	// Created after a/orig, but walked before it: LinkTo follows walk order.
	if err := os.Link(filepath.Join(root, "a/orig"), filepath.Join(root, "0link")); err != nil {
		t.Fatal(err)
	}
	put(t, root, "a/setuid", []byte("#!/bin/sh\n"), 0o4755)
	put(t, root, "a-b", []byte("sorts between a and a/ by name, walked after a's content"), 0o644)
	symlink(t, "nowhere/x", filepath.Join(root, "dangling"))
	mkdirMode(t, root, "empty", 0o700)
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	symlink(t, "a/b.txt", filepath.Join(root, "link"))
	symlink(t, "a", filepath.Join(root, "linkdir"))
	symlink(t, "../../../etc", filepath.Join(root, "outside"))
	put(t, root, "sp ace ünï 日本.txt", []byte("unicode"), 0o600)
	mkdirMode(t, root, "sticky", 0o1777)
	put(t, root, "sticky/f", nil, 0o6000)
	return root
}

func TestScanTree(t *testing.T) {
	t.Parallel()
	root := makeScanTree(t)
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "a/setuid"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	entries, warnings := scanAll(t, root)
	if len(warnings) != 0 {
		t.Errorf("warnings %q, want none", warnings)
	}

	type want struct {
		path, typ string
		mode      uint32
		size      int64
		target    string
		linkTo    string
		links     uint64
		warning   string // a piece of the warning, "" for none
	}
	wants := []want{
		{path: ".", typ: manifest.TypeDir, mode: 0o750},
		{path: "0link", typ: manifest.TypeFile, mode: 0o640, size: 33, links: 2},
		{path: "a", typ: manifest.TypeDir, mode: 0o2755},
		{path: "a/b.txt", typ: manifest.TypeFile, mode: 0o644, size: 5, links: 2},
		{path: "a/hard", typ: manifest.TypeFile, mode: 0o644, size: 5, links: 2, linkTo: "a/b.txt"},
		{path: "a/orig", typ: manifest.TypeFile, mode: 0o640, size: 33, links: 2, linkTo: "0link"},
		{path: "a/setuid", typ: manifest.TypeFile, mode: 0o4755, size: 10, links: 1},
		{path: "a-b", typ: manifest.TypeFile, mode: 0o644, size: 56, links: 1},
		{path: "dangling", typ: manifest.TypeSymlink, mode: 0o777, target: "nowhere/x"},
		{path: "empty", typ: manifest.TypeDir, mode: 0o700},
		{path: "fifo", typ: manifest.TypeSpecial, mode: 0o600, warning: "FIFO skipped"},
		{path: "link", typ: manifest.TypeSymlink, mode: 0o777, target: "a/b.txt"},
		{path: "linkdir", typ: manifest.TypeSymlink, mode: 0o777, target: "a"},
		{path: "outside", typ: manifest.TypeSymlink, mode: 0o777, target: "../../../etc"},
		{path: "sp ace ünï 日本.txt", typ: manifest.TypeFile, mode: 0o600, size: 7, links: 1},
		{path: "sticky", typ: manifest.TypeDir, mode: 0o1777},
		{path: "sticky/f", typ: manifest.TypeFile, mode: 0o6000, links: 1},
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Path)
	}
	var wantPaths []string
	for _, w := range wants {
		wantPaths = append(wantPaths, w.path)
	}
	if !slices.Equal(got, wantPaths) {
		t.Fatalf("walk order:\n got %q\nwant %q", got, wantPaths)
	}
	for i, w := range wants {
		e := entries[i]
		if want := map[string]string{"fifo": manifest.SpecialFIFO}[w.path]; e.Special != want {
			t.Errorf("%s: special %q, want %q", w.path, e.Special, want)
		}
		if e.Type != w.typ || e.Mode != w.mode || e.Size != w.size || e.Target != w.target || e.LinkTo != w.linkTo || e.Links != w.links {
			t.Errorf("%s: type %s mode %o size %d target %q link to %q links %d; want %s %o %d %q %q %d",
				e.Path, e.Type, e.Mode, e.Size, e.Target, e.LinkTo, e.Links, w.typ, w.mode, w.size, w.target, w.linkTo, w.links)
		}
		if (w.warning == "") != (e.Warning == "") || !strings.Contains(e.Warning, w.warning) {
			t.Errorf("%s: warning %q, want %q", e.Path, e.Warning, w.warning)
		}
		if len(e.Content) != 0 || e.Unread {
			t.Errorf("%s: content %v unread %v, want neither from a scan", e.Path, e.Content, e.Unread)
		}
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(e.Path)))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if e.MTime != st.Mtim.Nano() || e.UID != int(st.Uid) || e.GID != int(st.Gid) {
			t.Errorf("%s: mtime %d uid %d gid %d, Lstat says %d %d %d", e.Path, e.MTime, e.UID, e.GID, st.Mtim.Nano(), st.Uid, st.Gid)
		}
		var wantIno uint64 // only regular files carry their inode
		if w.typ == manifest.TypeFile {
			wantIno = st.Ino
		}
		if e.Inode != wantIno {
			t.Errorf("%s: inode %d, want %d", e.Path, e.Inode, wantIno)
		}
	}
	if got := entries[slices.IndexFunc(entries, func(e manifest.Entry) bool { return e.Path == "a/setuid" })].MTime; got != mtime.UnixNano() {
		t.Errorf("a/setuid: mtime %d, want %d", got, mtime.UnixNano())
	}
	if entries[3].Inode != entries[4].Inode || entries[1].Inode != entries[5].Inode {
		t.Errorf("hard links have different inodes: %d %d, %d %d", entries[3].Inode, entries[4].Inode, entries[1].Inode, entries[5].Inode)
	}
}

// TestScanTreeIsAManifest checks that a scan, with content filled in,
// passes the manifest's validation: order, paths and types as it wants.
func TestScanTreeIsAManifest(t *testing.T) {
	t.Parallel()
	entries, _ := scanAll(t, makeScanTree(t))
	s := &manifest.Snapshot{
		Version: manifest.Version, ID: "scan", Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		Hash: "sha256", ChunkSize: 4096, Chunks: []manifest.Chunk{{Length: 4096, Zero: true}},
	}
	for _, e := range entries {
		if e.Type == manifest.TypeFile && e.Size > 0 {
			e.Content = []manifest.Extent{{Chunk: 0, Offset: 0, Length: e.Size}}
			if e.LinkTo == "" {
				s.Size += e.Size
			}
		}
		s.Files = append(s.Files, e)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestScanTreeNonUTF8Name: names (and symlink targets) that are not UTF-8
// text are backed up, in their encoded manifest form, byte-exact, with no
// warning; the pieces of such files read back.
func TestScanTreeNonUTF8Name(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	put(t, root, "ok", []byte("x"), 0o644)
	put(t, root, "bad\xffname", []byte("bad name"), 0o644)
	mkdirMode(t, root, "baddir\xfe", 0o755)
	put(t, root, "baddir\xfe/inside", []byte("inside"), 0o644)
	if err := os.Symlink("../\xfa/target", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	entries, warnings := scanAll(t, root)
	got := make(map[string]manifest.Entry)
	for _, e := range entries {
		if err := manifest.CheckPath(e.Path); err != nil {
			t.Errorf("entry %q: %v", e.Path, err)
		}
		got[manifest.OSPath(e.Path)] = e
	}
	for _, want := range []string{".", "ok", "bad\xffname", "baddir\xfe", "baddir\xfe/inside", "link"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no entry for %q among %d entries", want, len(entries))
		}
	}
	if len(warnings) != 0 {
		t.Errorf("warnings %q, want none", warnings)
	}
	if tgt := manifest.OSTarget(got["link"].Target); tgt != "../\xfa/target" {
		t.Errorf("symlink target %q, want the bytes as read", tgt)
	}
	for name, want := range map[string]string{"bad\xffname": "bad name", "baddir\xfe/inside": "inside"} {
		e := got[name]
		buf := make([]byte, e.Size)
		problems, err := source.ReadPieces(root, []plan.Piece{{Path: e.Path, Length: e.Size, Size: e.Size, MTime: e.MTime, Inode: e.Inode}}, buf)
		if err != nil || len(problems) > 0 || string(buf) != want {
			t.Errorf("ReadPieces(%q) = %q, %v, %v; want %q", e.Path, buf, problems, err, want)
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func TestScanTreeUnlistableDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root lists directories of mode 000; this case needs an unprivileged user")
	}
	root := t.TempDir()
	put(t, root, "closed/secret", []byte("x"), 0o644)
	mkdirMode(t, root, "closed", 0)
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "closed"), 0o755) })
	entries, _ := scanAll(t, root)
	if len(entries) != 2 || entries[1].Path != "closed" || !strings.Contains(entries[1].Warning, "not listed") {
		t.Fatalf("entries %+v, want . and closed with a warning", entries)
	}
}

func TestScanTreeErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := put(t, dir, "file", []byte("x"), 0o644)
	for _, root := range []string{filepath.Join(dir, "missing"), file} {
		err := source.ScanTree(t.Context(), root, func(manifest.Entry) error { return nil }, func(string) {})
		if err == nil {
			t.Errorf("ScanTree(%s) = nil, want an error", root)
		}
	}

	// emit's error stops the walk and is returned.
	errStop := errors.New("stop")
	n := 0
	err := source.ScanTree(t.Context(), makeScanTree(t), func(manifest.Entry) error {
		n++
		if n == 3 {
			return errStop
		}
		return nil
	}, func(string) {})
	if !errors.Is(err, errStop) || n != 3 {
		t.Errorf("ScanTree with failing emit = %v after %d entries, want %v after 3", err, n, errStop)
	}

	// A cancelled context stops it too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = source.ScanTree(ctx, makeScanTree(t), func(manifest.Entry) error { return nil }, func(string) {})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ScanTree with a cancelled context = %v, want context.Canceled", err)
	}
}

// pieceOf describes length bytes at off of root/rel as a scan saw it.
func pieceOf(t *testing.T, root, rel string, off, length int64) plan.Piece {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return plan.Piece{Path: rel, Offset: off, Length: length, Size: fi.Size(), MTime: st.Mtim.Nano(), Inode: st.Ino}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*13+i/7)
	}
	return b
}

func TestReadPieces(t *testing.T) {
	t.Parallel()
	var (
		dataA = pattern(1000, 1)
		dataB = pattern(3000, 2)
		dataC = pattern(500, 3)
		newB  = pattern(3000, 99)
		later = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	)
	// The pieces are a whole, dir/b from 1000 for 2000 bytes, and c whole;
	// each case changes dir/b after the "scan" and says what its slot
	// then holds.
	tests := []struct {
		name       string
		change     func(t *testing.T, root, outside string)
		piece      func(p *plan.Piece) // edits dir/b's piece; nil for none
		wantB      []byte
		wantErr    string // a piece of the problem's text, "" for no problem
		wantUnread bool
	}{
		{"unchanged", func(*testing.T, string, string) {}, nil, dataB[1000:3000], "", false},
		{"rewritten, same size", func(t *testing.T, root, _ string) {
			p := put(t, root, "dir/b", newB, 0o644)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}, nil, newB[1000:3000], "changed since the scan", false},
		{"grew", func(t *testing.T, root, _ string) {
			put(t, root, "dir/b", append(slices.Clone(newB), "more"...), 0o644)
		}, nil, newB[1000:3000], "changed since the scan", false},
		{"shrank into the piece", func(t *testing.T, root, _ string) {
			if err := os.Truncate(filepath.Join(root, "dir/b"), 1500); err != nil {
				t.Fatal(err)
			}
		}, nil, append(slices.Clone(dataB[1000:1500]), make([]byte, 1500)...), "changed since the scan", false},
		{"shrank before the piece", func(t *testing.T, root, _ string) {
			if err := os.Truncate(filepath.Join(root, "dir/b"), 10); err != nil {
				t.Fatal(err)
			}
		}, nil, make([]byte, 2000), "changed since the scan", false},
		{"replaced by another file, same size and mtime", func(t *testing.T, root, _ string) {
			p := filepath.Join(root, "dir/b")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			tmp := put(t, root, "dir/b.new", newB, 0o644)
			if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}, nil, newB[1000:3000], "changed since the scan", false},
		{"piece past its end at scan", func(*testing.T, string, string) {}, func(p *plan.Piece) {
			p.Offset = 2500 // [2500,+2000) of a 3000-byte file
		}, append(slices.Clone(dataB[2500:]), make([]byte, 1500)...), "shorter than scanned", false},
		{"deleted", func(t *testing.T, root, _ string) {
			if err := os.Remove(filepath.Join(root, "dir/b")); err != nil {
				t.Fatal(err)
			}
		}, nil, make([]byte, 2000), "not readable", true},
		{"replaced by a directory", func(t *testing.T, root, _ string) {
			if err := os.Remove(filepath.Join(root, "dir/b")); err != nil {
				t.Fatal(err)
			}
			put(t, root, "dir/b/inner", dataB, 0o644)
		}, nil, make([]byte, 2000), "not readable", true},
		{"replaced by a symlink", func(t *testing.T, root, outside string) {
			p := filepath.Join(root, "dir/b")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			symlink(t, filepath.Join(outside, "b"), p)
		}, nil, make([]byte, 2000), "not readable", true},
		{"replaced by a symlink inside the tree", func(t *testing.T, root, _ string) {
			p := filepath.Join(root, "dir/b")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			put(t, root, "dir/b2", dataB, 0o644)
			symlink(t, "b2", p) // same bytes, but a symlink is never followed
		}, nil, make([]byte, 2000), "not readable", true},
		{"directory replaced by a symlink out of the tree", func(t *testing.T, root, outside string) {
			if err := os.RemoveAll(filepath.Join(root, "dir")); err != nil {
				t.Fatal(err)
			}
			symlink(t, outside, filepath.Join(root, "dir"))
		}, nil, make([]byte, 2000), "not readable", true},
		{"path out of the tree", func(*testing.T, string, string) {}, func(p *plan.Piece) {
			p.Path = "../outside/b"
		}, make([]byte, 2000), "not readable", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
			put(t, root, "a", dataA, 0o644)
			put(t, root, "dir/b", dataB, 0o644)
			put(t, root, "c", dataC, 0o644)
			put(t, outside, "b", dataB, 0o644) // what a symlink would reach
			pieces := []plan.Piece{
				pieceOf(t, root, "a", 0, 1000),
				pieceOf(t, root, "dir/b", 1000, 2000),
				pieceOf(t, root, "c", 0, 500),
			}
			if tt.piece != nil {
				tt.piece(&pieces[1])
			}
			tt.change(t, root, outside)
			buf := bytes.Repeat([]byte{0xaa}, 3500) // not zeros: zeroing must show
			problems, err := source.ReadPieces(root, pieces, buf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:1000], dataA) || !bytes.Equal(buf[3000:], dataC) {
				t.Errorf("the pieces of a and c are not their bytes")
			}
			if !bytes.Equal(buf[1000:3000], tt.wantB) {
				i := slices.IndexFunc(buf[1000:3000], func(b byte) bool { return b == 0xaa })
				t.Errorf("dir/b's slot differs from what was expected (first untouched byte at %d)", i)
			}
			if tt.wantErr == "" {
				if len(problems) != 0 {
					t.Fatalf("problems %+v, want none", problems)
				}
				return
			}
			if len(problems) != 1 {
				t.Fatalf("problems %+v, want one for dir/b", problems)
			}
			p := problems[0]
			if p.Path != pieces[1].Path || p.Unread != tt.wantUnread || !strings.Contains(p.Err, tt.wantErr) {
				t.Errorf("problem %+v, want path %s unread %v and %q", p, pieces[1].Path, tt.wantUnread, tt.wantErr)
			}
		})
	}
}

// TestReadPiecesSameFileTwice reads two pieces of one file into one pack,
// as a large file's tail and a hard link never are but a caller may ask.
func TestReadPiecesSameFileTwice(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	data := pattern(100, 5)
	put(t, root, "f", data, 0o644)
	buf := make([]byte, 30)
	problems, err := source.ReadPieces(root, []plan.Piece{pieceOf(t, root, "f", 90, 10), pieceOf(t, root, "f", 0, 20)}, buf)
	if err != nil || len(problems) != 0 {
		t.Fatalf("ReadPieces = %v, %v", problems, err)
	}
	if want := append(slices.Clone(data[90:]), data[:20]...); !bytes.Equal(buf, want) {
		t.Fatalf("got %v, want %v", buf, want)
	}
}

func TestReadPiecesUnreadableFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads files of mode 000; this case needs an unprivileged user")
	}
	root := t.TempDir()
	put(t, root, "secret", []byte("xyz"), 0)
	buf := []byte{1, 2, 3}
	problems, err := source.ReadPieces(root, []plan.Piece{pieceOf(t, root, "secret", 0, 3)}, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !problems[0].Unread || !bytes.Equal(buf, []byte{0, 0, 0}) {
		t.Fatalf("problems %+v buf %v, want one Unread and zeros", problems, buf)
	}
}

func TestReadPiecesMissingRoot(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "gone")
	if _, err := source.ReadPieces(root, []plan.Piece{{Path: "f", Length: 1}}, make([]byte, 1)); err == nil {
		t.Fatalf("ReadPieces(%s) = nil error, want one", root)
	}
}
