package manifest_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// objectStore keeps directory objects in memory, named by their SHA-256,
// as a plaintext repository names them.
type objectStore struct {
	objects map[string][]byte
	puts    int
}

func newObjectStore() *objectStore { return &objectStore{objects: make(map[string][]byte)} }

func (o *objectStore) put(raw []byte) (manifest.TreeRef, error) {
	o.puts++
	id := chunk.Sum(raw).String()
	o.objects[id] = append([]byte(nil), raw...)
	return manifest.TreeRef{ID: id, StoredSize: int64(len(raw)) + 40}, nil
}

func (o *objectStore) load(refs []manifest.TreeRef) ([][]byte, error) {
	out := make([][]byte, len(refs))
	for i, ref := range refs {
		raw, ok := o.objects[ref.ID]
		if !ok {
			return nil, fmt.Errorf("no object %s", ref.ID)
		}
		out[i] = raw
	}
	return out, nil
}

// roundTrip stores s as a tree, one object per directory, and assembles
// it again through a JSON encoding of its stored form, as a repository
// would.
func roundTrip(t *testing.T, s *manifest.Snapshot, objects *objectStore) (*manifest.Snapshot, *manifest.Snapshot) {
	t.Helper()
	return roundTripWith(t, manifest.TreeOptions{}, s, objects)
}

// roundTripWith is roundTrip with the given options.
func roundTripWith(t *testing.T, opts manifest.TreeOptions, s *manifest.Snapshot, objects *objectStore) (*manifest.Snapshot, *manifest.Snapshot) {
	t.Helper()
	stored, err := s.SplitTreesWith(opts, objects.put)
	if err != nil {
		t.Fatalf("SplitTrees: %v", err)
	}
	js, err := manifest.EncodeStored(stored)
	if err != nil {
		t.Fatalf("EncodeStored: %v", err)
	}
	back, err := manifest.DecodeStoredReader(strings.NewReader(string(js)))
	if err != nil {
		t.Fatalf("DecodeStoredReader: %v", err)
	}
	if !back.Stored() {
		t.Fatal("the decoded manifest is not in stored form")
	}
	if err := back.Assemble(objects.load); err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("the assembled snapshot is invalid: %v", err)
	}
	return stored, back
}

// TestTreesRoundTrip: a snapshot stored as directory objects assembles to
// the same entries, with the same content, in the same order; only
// directories that hold something have an object.
func TestTreesRoundTrip(t *testing.T) {
	t.Parallel()
	s := filesSample()
	objects := newObjectStore()
	stored, back := roundTrip(t, s, objects)
	if stored.Version != manifest.VersionTrees || len(stored.Files) != 0 || len(stored.Chunks) != 0 {
		t.Errorf("stored form: version %d, %d files, %d chunks; want %d, none, none",
			stored.Version, len(stored.Files), len(stored.Chunks), manifest.VersionTrees)
	}
	if len(s.Files) == 0 || s.Version != manifest.Version {
		t.Error("SplitTrees changed the snapshot it was given")
	}
	// ".", "a" and "a/sub" hold something; "empty" does not.
	if len(objects.objects) != 3 || objects.puts != 3 {
		t.Errorf("%d objects from %d puts, want 3 and 3", len(objects.objects), objects.puts)
	}
	if len(back.Trees) != 3 {
		t.Errorf("the assembled snapshot names %d directory objects, want 3", len(back.Trees))
	}
	if len(back.Files) != len(s.Files) {
		t.Fatalf("%d entries back, want %d", len(back.Files), len(s.Files))
	}
	for i, want := range s.Files {
		got := back.Files[i]
		if got.Path != want.Path || got.Type != want.Type || got.Mode != want.Mode || got.MTime != want.MTime ||
			got.Size != want.Size || got.LinkTo != want.LinkTo || got.Target != want.Target || got.Unread != want.Unread ||
			got.Warning != want.Warning || got.Inode != want.Inode || got.UID != want.UID {
			t.Errorf("entry %d: got %+v, want %+v", i, got, want)
		}
		if len(got.Content) != len(want.Content) {
			t.Errorf("entry %q: %d extents, want %d", want.Path, len(got.Content), len(want.Content))
			continue
		}
		for j, x := range want.Content {
			g := got.Content[j]
			if back.Chunks[g.Chunk] != s.Chunks[x.Chunk] || g.Offset != x.Offset || g.Length != x.Length {
				t.Errorf("entry %q extent %d: %+v of %+v, want %+v of %+v", want.Path, j, g, back.Chunks[g.Chunk], x, s.Chunks[x.Chunk])
			}
		}
	}
	// The same tree again is the same objects: nothing new to store.
	again := newObjectStore()
	stored2, _ := roundTrip(t, filesSample(), again)
	if !reflect.DeepEqual(stored.Root, stored2.Root) || !reflect.DeepEqual(objects.objects, again.objects) {
		t.Error("the same tree stored twice gives different objects")
	}
}

// TestTreesShareUnchangedDirectories: changing one file changes only the
// objects of the directories on its path.
func TestTreesShareUnchangedDirectories(t *testing.T) {
	t.Parallel()
	before, after := newObjectStore(), newObjectStore()
	roundTrip(t, filesSample(), before)
	s := filesSample()
	entry(t, s, "a/sub/d").MTime++
	roundTrip(t, s, after)
	changed := 0
	for id := range after.objects {
		if _, ok := before.objects[id]; !ok {
			changed++
		}
	}
	if changed != 3 { // a/sub, a, and the root
		t.Errorf("%d objects changed, want 3 (the directories on the changed file's path)", changed)
	}
	s = filesSample()
	entry(t, s, "link").Target = "a/sub"
	other := newObjectStore()
	roundTrip(t, s, other)
	changed = 0
	for id := range other.objects {
		if _, ok := before.objects[id]; !ok {
			changed++
		}
	}
	if changed != 1 { // the root only
		t.Errorf("%d objects changed, want 1 (the root's)", changed)
	}
}

// sameEntries fails unless got lists the entries of want, in order, with
// the same content.
func sameEntries(t *testing.T, want, got *manifest.Snapshot) {
	t.Helper()
	if len(got.Files) != len(want.Files) {
		t.Fatalf("%d entries back, want %d", len(got.Files), len(want.Files))
	}
	for i, w := range want.Files {
		g := got.Files[i]
		if g.Path != w.Path || g.Type != w.Type || g.Mode != w.Mode || g.Size != w.Size || len(g.Content) != len(w.Content) {
			t.Fatalf("entry %d: %+v, want %+v", i, g, w)
		}
		for j, x := range w.Content {
			if got.Chunks[g.Content[j].Chunk] != want.Chunks[x.Chunk] || g.Content[j].Offset != x.Offset {
				t.Fatalf("entry %q extent %d differs", w.Path, j)
			}
		}
	}
}

// bigDirSample is filesSample with a directory "big" of n files, whose
// listing takes more than 4 KiB when n is 100.
func bigDirSample(n int) *manifest.Snapshot {
	s := filesSample()
	s.Files = append(s.Files, manifest.Entry{Path: "big", Type: manifest.TypeDir, Mode: 0o755})
	for i := range n {
		s.Files = append(s.Files, manifest.Entry{Path: fmt.Sprintf("big/file-with-a-longish-name-%04d", i), Type: manifest.TypeFile, Mode: 0o644,
			Inode: uint64(1000 + i), Links: 1})
	}
	return s
}

// TestTreesInlineSmallDirectories: by default a small directory is listed
// inside its parent's object, a large one gets an object of its own, and
// no object takes in more than its budget of inlined listings; each way
// the tree assembles back the same.
func TestTreesInlineSmallDirectories(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		snap        *manifest.Snapshot
		opts        manifest.TreeOptions
		wantObjects int
	}{
		{"small tree: one object", filesSample(), manifest.DefaultTreeOptions, 1},
		{"every directory its own object", filesSample(), manifest.TreeOptions{}, 3},
		{"a large directory stays an object", bigDirSample(100), manifest.DefaultTreeOptions, 2},
		{"the budget of inlined listings per object", filesSample(), manifest.TreeOptions{InlineMax: 4 << 10, InlinePerObject: 40}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objects := newObjectStore()
			_, back := roundTripWith(t, tt.opts, tt.snap, objects)
			if len(objects.objects) != tt.wantObjects || len(back.Trees) != tt.wantObjects {
				t.Errorf("%d objects stored, %d named; want %d", len(objects.objects), len(back.Trees), tt.wantObjects)
			}
			sameEntries(t, tt.snap, back)
		})
	}
}

// TestSplitTreesNotPreorder: entries out of walk order are reported, for
// the repository to store them flat.
func TestSplitTreesNotPreorder(t *testing.T) {
	t.Parallel()
	s := filesSample()
	// Move "a/sub/d" after "empty": its directory was closed before it.
	var d manifest.Entry
	for i, e := range s.Files {
		if e.Path == "a/sub/d" {
			d = e
			s.Files = append(s.Files[:i], s.Files[i+1:]...)
			break
		}
	}
	for i, e := range s.Files {
		if e.Path == "empty" {
			s.Files = append(s.Files[:i+1], append([]manifest.Entry{d}, s.Files[i+1:]...)...)
			break
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the reordered sample is invalid: %v", err)
	}
	if _, err := s.SplitTrees(newObjectStore().put); !errors.Is(err, manifest.ErrNotPreorder) {
		t.Errorf("SplitTrees = %v, want ErrNotPreorder", err)
	}
}

// hostileTree is a stored tree a hostile or damaged repository could
// hold: build stores its objects and returns the root's reference; every
// reader must refuse it with an error mentioning wantMsg (wrapping
// wantErr, if set).
type hostileTree struct {
	name    string
	build   func(o *objectStore) manifest.TreeRef
	wantErr error
	wantMsg string
	// assembleOnly: refused when counted before expanding, which a walk
	// of a listing, stopping when its caller does, does not do.
	assembleOnly bool
}

// hostileTrees returns the trees readers of stored trees refuse.
func hostileTrees(t *testing.T) []hostileTree {
	obj := func(entries ...manifest.TreeEntry) []byte {
		raw, err := manifest.EncodeTree(entries)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	file := manifest.TreeEntry{Name: "f", Type: manifest.TypeFile, Mode: 0o644}
	return []hostileTree{
		{name: "a name with a slash", build: func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "../etc", Type: manifest.TypeFile}))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: `named "../etc"`},
		{name: "a name that is a dot-dot", build: func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "..", Type: manifest.TypeDir}))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: `named ".."`},
		{name: "a file naming a directory object", build: func(o *objectStore) manifest.TreeRef {
			inner, _ := o.put(obj(file))
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "x", Type: manifest.TypeFile, TreeRef: inner}))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: "names a directory object"},
		{name: "a file listing entries inline", build: func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "x", Type: manifest.TypeFile, Inline: []manifest.TreeEntry{file}}))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: "names a directory object"},
		{name: "an inline listing escaping by name", build: func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(manifest.TreeEntry{Name: "d", Type: manifest.TypeDir,
				Inline: []manifest.TreeEntry{{Name: "..", Type: manifest.TypeDir}}}))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: `named ".."`},
		{name: "the same name twice", build: func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put(obj(file, manifest.TreeEntry{Name: "g", Type: manifest.TypeFile}, file))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: "twice"},
		{name: "one object named from everywhere", build: func(o *objectStore) manifest.TreeRef {
			// 40 levels of two directories naming the same object: 2^40 entries.
			ref, _ := o.put(obj(file))
			for range 40 {
				ref, _ = o.put(obj(manifest.TreeEntry{Name: "l", Type: manifest.TypeDir, TreeRef: ref},
					manifest.TreeEntry{Name: "r", Type: manifest.TypeDir, TreeRef: ref}))
			}
			return ref
		}, wantErr: manifest.ErrTooLarge, wantMsg: "entries", assembleOnly: true},
		{name: "a missing object", build: func(o *objectStore) manifest.TreeRef {
			return manifest.TreeRef{ID: chunk.Sum([]byte("gone")).String(), StoredSize: 50}
		}, wantMsg: "no object"},
		{name: "not a directory object", build: func(o *objectStore) manifest.TreeRef {
			ref, _ := o.put([]byte(`{"entries":[]}`))
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: "not a directory object"},
		{name: "cut short", build: func(o *objectStore) manifest.TreeRef {
			raw := obj(file)
			ref, _ := o.put(raw[:len(raw)-3])
			return ref
		}, wantErr: manifest.ErrInvalid, wantMsg: "directory object"},
		{name: "a bad object name", build: func(o *objectStore) manifest.TreeRef {
			return manifest.TreeRef{ID: "../../config", StoredSize: 50}
		}, wantErr: manifest.ErrInvalid, wantMsg: "directory object"},
	}
}

// storedSample returns filesSample stored as a tree whose root is built
// by build.
func storedSample(t *testing.T, o *objectStore, build func(o *objectStore) manifest.TreeRef) *manifest.Snapshot {
	t.Helper()
	stored, err := filesSample().SplitTrees(o.put)
	if err != nil {
		t.Fatal(err)
	}
	stored.Root.TreeRef = build(o)
	return stored
}

func TestAssembleRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range hostileTrees(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newObjectStore()
			stored := storedSample(t, o, tt.build)
			err := stored.Assemble(o.load)
			if err == nil {
				err = stored.Validate()
			}
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Assemble, Validate = %v; want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

// TestDecodeRefusesStoredForm: the plain decoders never hand out a tree
// manifest without its entries as if it were whole.
func TestDecodeRefusesStoredForm(t *testing.T) {
	t.Parallel()
	stored, err := filesSample().SplitTrees(newObjectStore().put)
	if err != nil {
		t.Fatal(err)
	}
	js, err := manifest.EncodeStored(stored)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Decode(js); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("Decode of a stored tree manifest = %v, want ErrInvalid", err)
	}
	if _, err := manifest.DecodeReader(strings.NewReader(string(js))); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("DecodeReader of a stored tree manifest = %v, want ErrInvalid", err)
	}
	vol := sample()
	vol.Root = stored.Root
	if err := vol.Validate(); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("Validate of a volume snapshot with a root directory = %v, want ErrInvalid", err)
	}
}

// TestTreeCodec: every field of an entry survives the binary form, and
// every truncation or trailing byte of an object is refused.
func TestTreeCodec(t *testing.T) {
	t.Parallel()
	h := chunk.Sum([]byte("c")).String()
	entries := []manifest.TreeEntry{
		{Name: "f", Type: manifest.TypeFile, Mode: 0o4755, UID: -2, GID: 1 << 31, MTime: -1, Size: 1 << 40, Inode: 1 << 63, Links: 3,
			LinkTo: "a/b", Warning: "changed while read", Content: []manifest.TreeExtent{
				{Hash: h, StoredSize: 99, ChunkLen: 4096, Offset: 10, Length: 20}, {Zero: true, ChunkLen: 512, Length: 512}}},
		{Name: "\x00bm90IHRleHQ", Type: manifest.TypeDir, Mode: 0o755, TreeRef: manifest.TreeRef{ID: h, StoredSize: 7}},
		{Name: "l", Type: manifest.TypeSymlink, Target: "../x"},
		{Name: "s", Type: manifest.TypeSpecial, Special: manifest.SpecialSocket, Warning: "skipped"},
		{Name: "u", Type: manifest.TypeFile, Unread: true, Size: 5},
	}
	raw, err := manifest.EncodeTree(entries)
	if err != nil {
		t.Fatal(err)
	}
	o := newObjectStore()
	ref, _ := o.put(raw)
	s := &manifest.Snapshot{Version: manifest.VersionTrees, ID: "x", Mode: manifest.ModeFiles, Hash: "sha256", ChunkSize: 4096,
		Root: &manifest.TreeEntry{Type: manifest.TypeDir, TreeRef: ref}}
	// The object names h as a directory object too: give it one.
	o.objects[h], _ = manifest.EncodeTree(nil)
	if err := s.Assemble(o.load); err != nil {
		t.Fatal(err)
	}
	if len(s.Files) != len(entries)+1 {
		t.Fatalf("%d entries back, want %d", len(s.Files), len(entries)+1)
	}
	for i, e := range entries {
		got := s.Files[i+1]
		if got.Path != e.Name || got.Type != e.Type || got.Mode != e.Mode || got.UID != e.UID || got.GID != e.GID ||
			got.MTime != e.MTime || got.Size != e.Size || got.Inode != e.Inode || got.Links != e.Links || got.Target != e.Target ||
			got.Special != e.Special || got.LinkTo != e.LinkTo || got.Warning != e.Warning || got.Unread != e.Unread ||
			len(got.Content) != len(e.Content) {
			t.Errorf("entry %d: %+v, want %+v", i, got, e)
			continue
		}
		for j, x := range e.Content {
			c := s.Chunks[got.Content[j].Chunk]
			if c.Hash != x.Hash || c.StoredSize != x.StoredSize || c.Zero != x.Zero || c.Length != x.ChunkLen ||
				got.Content[j].Offset != x.Offset || got.Content[j].Length != x.Length {
				t.Errorf("entry %d extent %d: %+v in %+v, want %+v", i, j, got.Content[j], c, x)
			}
		}
	}
	for n := range len(raw) {
		o.objects[ref.ID] = raw[:n]
		s.Files, s.Chunks = nil, nil
		if err := s.Assemble(o.load); !errors.Is(err, manifest.ErrInvalid) {
			t.Fatalf("the object cut to %d of %d bytes: %v, want ErrInvalid", n, len(raw), err)
		}
	}
	o.objects[ref.ID] = append(bytes.Clone(raw), 0)
	s.Files, s.Chunks = nil, nil
	if err := s.Assemble(o.load); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("a byte after the object: %v, want ErrInvalid", err)
	}
	if _, err := manifest.EncodeTree([]manifest.TreeEntry{{Name: "x", Type: "fifo"}}); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("EncodeTree of an unknown type: %v, want ErrInvalid", err)
	}
	deep := []manifest.TreeEntry{{Name: "f", Type: manifest.TypeFile}}
	for range manifest.MaxInlineDepth + 1 {
		deep = []manifest.TreeEntry{{Name: "d", Type: manifest.TypeDir, Inline: deep}}
	}
	if _, err := manifest.EncodeTree(deep); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("EncodeTree of listings nested %d deep: %v, want ErrInvalid", manifest.MaxInlineDepth+1, err)
	}
}

// FuzzAssemble: no directory object, however malformed, panics the
// reader or assembles into a snapshot that Validate then accepts with a
// path outside the tree.
func FuzzAssemble(f *testing.F) {
	good, _ := manifest.EncodeTree([]manifest.TreeEntry{{Name: "f", Type: manifest.TypeFile, Size: 3,
		Content: []manifest.TreeExtent{{Hash: chunk.Sum(nil).String(), StoredSize: 9, ChunkLen: 3, Length: 3}}}})
	f.Add(good)
	f.Add([]byte("bbdir\x01\x00"))
	inline, _ := manifest.EncodeTree([]manifest.TreeEntry{{Name: "d", Type: manifest.TypeDir,
		Inline: []manifest.TreeEntry{{Name: "e", Type: manifest.TypeSymlink, Target: "x"}}}})
	f.Add(inline)
	f.Fuzz(func(t *testing.T, raw []byte) {
		o := newObjectStore()
		ref, _ := o.put(raw)
		s := &manifest.Snapshot{Version: manifest.VersionTrees, ID: "x", Mode: manifest.ModeFiles, Hash: "sha256", ChunkSize: 4096,
			Root: &manifest.TreeEntry{Type: manifest.TypeDir, TreeRef: ref}}
		if err := s.Assemble(o.load); err != nil {
			return
		}
		s.Size = 0
		for _, e := range s.Files {
			if e.Type == manifest.TypeFile && e.LinkTo == "" && !e.Unread {
				s.Size += e.Size
			}
		}
		if err := s.Validate(); err != nil {
			return
		}
		for _, e := range s.Files {
			if err := manifest.CheckPath(e.Path); err != nil {
				t.Fatalf("a valid snapshot holds %q: %v", e.Path, err)
			}
		}
	})
}

// TestTreesSharedObjectsAssembleWhole: directories with the same listing
// share one object, at several depths (an object named twice inside an
// object that is itself named twice is expanded four times); assembling
// lets each object go after its last expansion, never before.
func TestTreesSharedObjectsAssembleWhole(t *testing.T) {
	t.Parallel()
	s := &manifest.Snapshot{
		Version: manifest.Version, ID: "shared", Mode: manifest.ModeFiles, SourceKind: manifest.KindDir,
		Host: "h", Path: "/src", ChunkSize: 1 << 20, Hash: "sha256", Compression: "zstd", Size: 32,
		Chunks: []manifest.Chunk{{Length: 8, Hash: strings.Repeat("ab", 32), StoredSize: 20}},
	}
	add := func(p string, typ string) {
		e := manifest.Entry{Path: p, Type: typ, Mode: 0o755, MTime: 1}
		if typ == manifest.TypeFile {
			e.Mode, e.Size, e.Content = 0o644, 8, []manifest.Extent{{Chunk: 0, Length: 8}}
		}
		s.Files = append(s.Files, e)
	}
	add(".", manifest.TypeDir)
	for _, top := range []string{"x", "y"} {
		add(top, manifest.TypeDir)
		for _, sub := range []string{"s1", "s2"} {
			add(top+"/"+sub, manifest.TypeDir)
			add(top+"/"+sub+"/f", manifest.TypeFile)
		}
	}
	objects := newObjectStore()
	_, back := roundTrip(t, s, objects)
	if len(objects.objects) != 3 { // the root; x and y; every s1 and s2
		t.Errorf("%d objects, want 3", len(objects.objects))
	}
	sameEntries(t, s, back)
}

// TestTreeWriterRefuses: a tree written entry by entry is checked as
// Validate checks a whole snapshot, with no more than a directory's
// listing in hand: a name twice in one directory (in or out of order), an
// entry before its directory, content that does not hold together, a hard
// link to no earlier file with other links.
func TestTreeWriterRefuses(t *testing.T) {
	t.Parallel()
	h := chunk.Sum([]byte("c")).String()
	dirE := manifest.TreeEntry{Type: manifest.TypeDir, Mode: 0o755}
	fileE := func(size int64, x ...manifest.TreeExtent) manifest.TreeEntry {
		return manifest.TreeEntry{Type: manifest.TypeFile, Mode: 0o644, Size: size, Links: 1, Content: x}
	}
	ext := func(off, n int64) manifest.TreeExtent {
		return manifest.TreeExtent{Hash: h, StoredSize: 9, ChunkLen: 100, Offset: off, Length: n}
	}
	linked := fileE(5, ext(0, 5))
	linked.Links = 2
	type add struct {
		path string
		e    manifest.TreeEntry
	}
	tests := []struct {
		name    string
		adds    []add
		wantMsg string // "" for none
	}{
		{"a valid tree, names out of byte order", []add{{".", dirE}, {"b", dirE}, {"b/y", fileE(5, ext(0, 5))}, {"b/x", fileE(0)}, {"a", linked},
			{"c", manifest.TreeEntry{Type: manifest.TypeFile, Mode: 0o644, Size: 5, Links: 2, LinkTo: "a", Content: []manifest.TreeExtent{ext(0, 5)}}}}, ""},
		{"a name twice, in order", []add{{".", dirE}, {"a", fileE(0)}, {"a", fileE(0)}}, "listed twice"},
		{"a name twice, out of order", []add{{".", dirE}, {"b", fileE(0)}, {"a", fileE(0)}, {"b", fileE(0)}}, "listed twice"},
		{"not the root first", []add{{"a", fileE(0)}}, "first entry"},
		{"before its directory", []add{{".", dirE}, {"d/x", fileE(0)}}, "walk order"},
		{"under a file", []add{{".", dirE}, {"f", fileE(0)}, {"f/x", fileE(0)}}, "walk order"},
		{"a bad path", []add{{".", dirE}, {"../x", fileE(0)}}, "invalid"},
		{"extents short of the size", []add{{".", dirE}, {"f", fileE(6, ext(0, 5))}}, "extents hold 5 bytes"},
		{"an extent past its chunk", []add{{".", dirE}, {"f", fileE(5, ext(98, 5))}}, "outside its chunk"},
		{"a directory with content", []add{{".", dirE}, {"d", manifest.TreeEntry{Type: manifest.TypeDir, Size: 3}}}, "no content"},
		{"mode bits", []add{{".", dirE}, {"f", manifest.TreeEntry{Type: manifest.TypeFile, Mode: 0o170644}}}, "permission bits"},
		{"a hard link to nothing", []add{{".", dirE}, {"l", manifest.TreeEntry{Type: manifest.TypeFile, LinkTo: "gone"}}}, "hard link"},
		{"a hard link to a file of one link", []add{{".", dirE}, {"a", fileE(0)}, {"l", manifest.TreeEntry{Type: manifest.TypeFile, LinkTo: "a"}}}, "hard link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newObjectStore()
			w := manifest.NewTreeWriter("w", manifest.DefaultTreeOptions, o.put)
			var err error
			for _, a := range tt.adds {
				if err = w.Add(a.path, a.e); err != nil {
					break
				}
			}
			if err == nil {
				_, err = w.Close()
			}
			switch {
			case tt.wantMsg == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)):
				t.Errorf("got %v, want an error mentioning %q", err, tt.wantMsg)
			case tt.wantMsg == "" && w.Size() != 10:
				t.Errorf("size %d, want 10 (the link once)", w.Size())
			}
		})
	}
}
