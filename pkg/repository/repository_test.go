package repository_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
)

// env is one empty store under test and a way to damage its objects behind
// the repository's back.
type env struct {
	st store.Store
	// encrypted makes open create and open encrypted repositories, with
	// keys.
	encrypted bool
	keys      *keyring.Keys
	// rewrite replaces the stored object under key with edit's result, the
	// way a failing disk or an operator would: on a directory store it edits
	// the file under the root directly.
	rewrite func(t *testing.T, key string, edit func([]byte) []byte)
}

func newDirEnv(t *testing.T) env {
	t.Helper()
	root := t.TempDir()
	st, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return env{st: st, rewrite: func(t *testing.T, key string, edit func([]byte) []byte) {
		t.Helper()
		path := filepath.Join(root, filepath.FromSlash(key))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, edit(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}}
}

func newS3Env(t *testing.T, srv *testenv.MinIOServer) env {
	t.Helper()
	st, err := s3store.New(t.Context(), srv.S3Config(t, "", "repos/"+strings.ToLower(rand.Text())))
	if err != nil {
		t.Fatal(err)
	}
	return env{st: st, rewrite: func(t *testing.T, key string, edit func([]byte) []byte) {
		t.Helper()
		data, err := st.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(t.Context(), key, edit(data)); err != nil {
			t.Fatal(err)
		}
	}}
}

// TestRepository runs every test on a directory store and on a real MinIO
// server.
func TestRepository(t *testing.T) {
	t.Parallel()
	encrypted := func(newEnv func(t *testing.T) env) func(t *testing.T) env {
		return func(t *testing.T) env { e := newEnv(t); e.encrypted = true; return e }
	}
	t.Run("dir", func(t *testing.T) {
		t.Parallel()
		runRepositoryTests(t, newDirEnv)
	})
	t.Run("dir-encrypted", func(t *testing.T) {
		t.Parallel()
		runRepositoryTests(t, encrypted(newDirEnv))
	})
	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		srv := testenv.MinIO(t)
		newEnv := func(t *testing.T) env { return newS3Env(t, srv) }
		t.Run("plaintext", func(t *testing.T) {
			t.Parallel()
			runRepositoryTests(t, newEnv)
		})
		t.Run("encrypted", func(t *testing.T) {
			t.Parallel()
			runRepositoryTests(t, encrypted(newEnv))
		})
	})
}

func runRepositoryTests(t *testing.T, newEnv func(t *testing.T) env) {
	tests := []struct {
		name string
		run  func(t *testing.T, newEnv func(t *testing.T) env)
	}{
		{"Open", testOpen},
		{"OpenRejectsConfig", testOpenRejectsConfig},
		{"ChunkRoundTrip", testChunkRoundTrip},
		{"StatChunk", testStatChunk},
		{"CorruptChunk", testCorruptChunk},
		{"MissingChunk", testMissingChunk},
		{"SnapshotRoundTrip", testSnapshotRoundTrip},
		{"SaveSnapshotAgain", testSaveSnapshotAgain},
		{"SaveSnapshotInvalid", testSaveSnapshotInvalid},
		{"FindSnapshot", testFindSnapshot},
		{"LatestEmpty", testLatestEmpty},
		{"ForeignObjects", testForeignObjects},
		{"CorruptSnapshot", testCorruptSnapshot},
		{"OversizedSnapshot", testOversizedSnapshot},
		{"SnapshotHeaders", testSnapshotHeaders},
		{"Forget", testForget},
		{"Writers", testWriters},
		{"DamageRecords", testDamageRecords},
		{"PruneObjects", testPruneObjects},
		{"TreeSnapshots", testTreeSnapshots},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newEnv)
		})
	}
}

// testPassword opens the encrypted repositories of the tests.
const testPassword = "correct horse battery staple"

// open opens the repository in the env's store; with create, a store
// without one gets one: plaintext, or encrypted, with a password, when the
// env is. An encrypted repository opens with all of its keys.
func (e *env) open(t *testing.T, create bool) *repository.Repository {
	t.Helper()
	ctx := t.Context()
	if !e.encrypted {
		r, err := repository.Open(ctx, e.st, repository.OpenOptions{CreatePlaintext: create})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if create && e.keys == nil {
		if _, err := e.st.Stat(ctx, repository.ConfigKey); errors.Is(err, store.ErrNotFound) {
			r, keys, err := repository.Init(ctx, e.st, repository.InitOptions{Wrap: wrapPassword(testPassword)})
			if err != nil {
				t.Fatal(err)
			}
			e.keys = keys
			return r
		}
	}
	r, err := repository.Open(ctx, e.st, repository.OpenOptions{Keys: e.keyFunc})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// keyFunc gives the env's keys to every repository it opens: all of them.
func (e *env) keyFunc(repository.Config) (repository.Credentials, error) {
	if e.keys == nil {
		return repository.Credentials{}, repository.ErrLocked
	}
	return repository.Credentials{Write: &e.keys.WriteKey, Open: keyring.NewOpener(e.keys.Private)}, nil
}

// wrapPassword wraps new keys by password, at a work factor that keeps
// tests fast.
func wrapPassword(password string) func(*keyring.Keys) ([]repository.KeyObject, error) {
	return func(k *keyring.Keys) ([]repository.KeyObject, error) {
		info, data, err := keyring.WrapPassword(k, []byte(password), "test", 10)
		return []repository.KeyObject{{Info: info, Data: data}}, err
	}
}

// hashName is the name of the chunk IDs of the env's repositories.
func (e *env) hashName() string {
	if e.encrypted {
		return repository.HashHMACSHA256
	}
	return repository.HashSHA256
}

// snapshot is snapshot for the env's repositories.
func (e *env) snapshot(id, jobID string, when time.Time) *manifest.Snapshot {
	s := snapshot(id, jobID, when)
	s.Hash = e.hashName()
	return s
}

func testOpen(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	ctx := t.Context()

	_, err := repository.Open(ctx, e.st, repository.OpenOptions{})
	if !errors.Is(err, repository.ErrNotRepository) {
		t.Fatalf("Open of an empty store: err = %v, want ErrNotRepository", err)
	}
	if _, err := e.st.Get(ctx, repository.ConfigKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Open without Create wrote a config (Get err = %v)", err)
	}

	created := e.open(t, true).Config()
	wantVersion, wantEncryption := repository.Version, ""
	if e.encrypted {
		wantVersion, wantEncryption = repository.VersionEncrypted, repository.EncryptionV1
	}
	if created.Version != wantVersion || created.Hash != e.hashName() || created.Encryption != wantEncryption ||
		created.ID == "" || created.Created.IsZero() || created.Encrypted() != e.encrypted {
		t.Fatalf("created config = %+v", created)
	}
	for _, create := range []bool{false, true} {
		got := e.open(t, create).Config()
		if got.ID != created.ID || !got.Created.Equal(created.Created) {
			t.Errorf("reopen (create=%v): config = %+v, want %+v", create, got, created)
		}
	}
}

func testOpenRejectsConfig(t *testing.T, newEnv func(t *testing.T) env) {
	tests := []struct {
		name    string
		config  string
		wantMsg string
	}{
		{"future version", `{"version":2,"id":"x","created":"2026-01-01T00:00:00Z","hash":"sha256"}`, "version 2"},
		{"no version", `{"id":"x","created":"2026-01-01T00:00:00Z","hash":"sha256"}`, "version 0"},
		{"unknown hash", `{"version":1,"id":"x","created":"2026-01-01T00:00:00Z","hash":"blake3"}`, `"blake3"`},
		{"not json", `BKCH`, "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if err := e.st.Put(t.Context(), repository.ConfigKey, []byte(tt.config)); err != nil {
				t.Fatal(err)
			}
			for _, create := range []bool{false, true} {
				_, err := repository.Open(t.Context(), e.st, repository.OpenOptions{CreatePlaintext: create})
				if err == nil {
					t.Fatalf("Open (create=%v) accepted config %s", create, tt.config)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Open (create=%v): err = %q, want it to mention %s", create, err, tt.wantMsg)
				}
			}
			if got, _ := e.st.Get(t.Context(), repository.ConfigKey); string(got) != tt.config {
				t.Errorf("config was rewritten: %q", got)
			}
		})
	}
}

// seal returns the ID and stored form of raw in r.
func seal(t *testing.T, r *repository.Repository, raw []byte) (chunk.ID, []byte) {
	t.Helper()
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.ChunkID(raw)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := r.SealChunk(s, nil, id, raw)
	if err != nil {
		t.Fatal(err)
	}
	return id, obj
}

func testChunkRoundTrip(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	tests := []struct {
		name string
		raw  []byte
		dst  []byte
	}{
		{"compressible", bytes.Repeat([]byte("bulkbackup "), 10000), nil},
		{"random", random, nil},
		{"one byte", []byte{7}, nil},
		{"appends to dst", []byte("chunk data"), []byte("prefix:")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			id, sealed := seal(t, r, tt.raw)
			for range 2 { // the second put is a redelivery: harmless
				if err := r.PutChunk(ctx, id, sealed); err != nil {
					t.Fatal(err)
				}
			}
			got, err := r.GetChunk(ctx, id, slices.Clone(tt.dst))
			if err != nil {
				t.Fatal(err)
			}
			if want := append(slices.Clone(tt.dst), tt.raw...); !bytes.Equal(got, want) {
				t.Fatalf("GetChunk = %d bytes, want %d bytes", len(got), len(want))
			}
			obj, err := e.st.Get(ctx, repository.ChunkKey(id))
			if err != nil {
				t.Fatalf("chunk not under its documented key: %v", err)
			}
			if !bytes.Equal(obj, sealed) {
				t.Fatal("stored object differs from the sealed chunk")
			}
		})
	}
}

func testStatChunk(t *testing.T, newEnv func(t *testing.T) env) {
	text := bytes.Repeat([]byte("compressible "), 4096)
	cut := func(b []byte) []byte { return b[:len(b)-1] }
	tests := []struct {
		name      string
		raw       []byte
		edit      func([]byte) []byte // nil: the object is not stored
		want      repository.ChunkState
		usableAt0 bool // Usable with no recorded size
	}{
		{"missing", []byte("x"), nil, repository.ChunkMissing, false},
		{"intact", text, func(b []byte) []byte { return b }, repository.ChunkIntact, true},
		{"intact, stored raw", []byte("short"), func(b []byte) []byte { return b }, repository.ChunkIntact, true},
		{"truncated", text, cut, repository.ChunkDamaged, false},
		{"extended", text, func(b []byte) []byte { return append(b, 1) }, repository.ChunkDamaged, false},
		{"header only", text, func(b []byte) []byte { return b[:chunk.HeaderSize] }, repository.ChunkDamaged, false},
		{"empty file", text, func([]byte) []byte { return nil }, repository.ChunkDamaged, false},
		{"names another chunk", text, func(b []byte) []byte { b[30] ^= 1; return b }, repository.ChunkDamaged, false},
		{"format 1, compressed", text, formatV1, repository.ChunkUnchecked, false},
		{"format 1, truncated raw", []byte("short"), func(b []byte) []byte { return cut(formatV1(b)) }, repository.ChunkDamaged, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if e.encrypted && strings.HasPrefix(tt.name, "format 1") {
				t.Skip("encrypted objects are never in format 1")
			}
			r := e.open(t, true)
			id, sealed := seal(t, r, tt.raw)
			if tt.edit != nil {
				if err := r.PutChunk(t.Context(), id, sealed); err != nil {
					t.Fatal(err)
				}
				e.rewrite(t, repository.ChunkKey(id), tt.edit)
			}
			st, err := r.StatChunk(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.want {
				t.Fatalf("StatChunk = %+v, want state %s", st, tt.want)
			}
			if got := st.Usable(0); got != tt.usableAt0 {
				t.Errorf("Usable(0) = %v, want %v", got, tt.usableAt0)
			}
			if tt.want == repository.ChunkUnchecked && !st.Usable(st.Size) || st.Usable(st.Size+1) && st.State != repository.ChunkIntact {
				t.Errorf("an unchecked chunk must be usable exactly at its recorded size: %+v", st)
			}
		})
	}
	t.Run("MissingChunks", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, true)
		var chunks []manifest.Chunk
		for i := range 6 {
			id, sealed := seal(t, r, bytes.Repeat([]byte{byte(i)}, 5000+i))
			if err := r.PutChunk(t.Context(), id, sealed); err != nil {
				t.Fatal(err)
			}
			chunks = append(chunks, manifest.Chunk{Hash: id.String(), Length: int64(5000 + i), StoredSize: int64(len(sealed))})
		}
		chunks = append(chunks, chunks[1], manifest.Chunk{Zero: true, Length: 4096}) // a repeat and a zero chunk
		e.rewrite(t, repository.ChunkKey(mustID(t, chunks[1].Hash)), func(b []byte) []byte { return b[:len(b)/2] })
		if err := e.st.Delete(t.Context(), repository.ChunkKey(mustID(t, chunks[4].Hash))); err != nil {
			t.Fatal(err)
		}
		got, err := r.MissingChunks(t.Context(), chunks)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int]bool{1: true, 4: true, 6: true}; !maps.Equal(got, want) {
			t.Fatalf("MissingChunks = %v, want %v", got, want)
		}
	})
}

// formatV1 rewrites a sealed object in object format 1 (no payload length
// in a 52-byte header), as repositories written before format 2 hold it.
func formatV1(obj []byte) []byte {
	v1 := append([]byte(nil), obj[:52]...)
	v1[4] = chunk.FormatVersion1
	binary.LittleEndian.PutUint32(v1[8:12], 52)
	return append(v1, obj[chunk.HeaderSize:]...)
}

func mustID(t *testing.T, s string) chunk.ID {
	t.Helper()
	id, err := chunk.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testCorruptChunk(t *testing.T, newEnv func(t *testing.T) env) {
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x01; return b }
	}
	other := func(r *repository.Repository) []byte { _, obj := seal(t, r, []byte("another chunk")); return obj }
	tests := []struct {
		name string
		raw  []byte
		edit func([]byte) []byte
	}{
		{"magic", []byte("plain chunk"), flip(0)},
		{"version", []byte("plain chunk"), flip(4)},
		{"raw length", []byte("plain chunk"), flip(12)},
		{"id in header", []byte("plain chunk"), flip(20)},
		{"stored payload", []byte("plain chunk"), flip(chunk.HeaderSize + 3)},
		{"compressed payload", bytes.Repeat([]byte("abcd"), 4096), flip(chunk.HeaderSize + 8)},
		{"last byte", bytes.Repeat([]byte("abcd"), 4096), func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
		{"truncated", bytes.Repeat([]byte("abcd"), 4096), func(b []byte) []byte { return b[:len(b)-1] }},
		{"header only", []byte("plain chunk"), func(b []byte) []byte { return b[:chunk.HeaderSize] }},
		{"empty", []byte("plain chunk"), func([]byte) []byte { return nil }},
		{"other chunk", []byte("plain chunk"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.open(t, true)
			id, sealed := seal(t, r, tt.raw)
			if err := r.PutChunk(t.Context(), id, sealed); err != nil {
				t.Fatal(err)
			}
			edit := tt.edit
			if edit == nil {
				edit = func([]byte) []byte { return other(r) }
			}
			e.rewrite(t, repository.ChunkKey(id), edit)
			got, err := r.GetChunk(t.Context(), id, nil)
			if !errors.Is(err, chunk.ErrCorrupt) {
				t.Fatalf("GetChunk of a damaged object: err = %v, want chunk.ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), id.String()) {
				t.Errorf("error %q does not name chunk %s", err, id)
			}
			if len(got) != 0 {
				t.Errorf("GetChunk returned %d bytes of a corrupt chunk", len(got))
			}
		})
	}
}

func testMissingChunk(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	id := chunk.Sum([]byte("never stored"))
	_, err := r.GetChunk(t.Context(), id, nil)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetChunk of a missing chunk: err = %v, want store.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), id.String()) {
		t.Errorf("error %q does not name chunk %s", err, id)
	}
}

// snapshot returns a valid two-chunk snapshot: one stored chunk, one zero.
func snapshot(id, jobID string, when time.Time) *manifest.Snapshot {
	return &manifest.Snapshot{
		Version: manifest.Version, ID: id, JobID: jobID, Time: when,
		Host: "db1", Path: "/srv/db1.img", Mode: manifest.ModeVolume, SourceKind: manifest.KindFile,
		Size: 8000, ChunkSize: 4096, Hash: "sha256", Compression: "zstd", Level: "fastest",
		Chunks: []manifest.Chunk{
			{Offset: 0, Length: 4096, Hash: chunk.Sum([]byte(id)).String(), StoredSize: 100},
			{Offset: 4096, Length: 3904, Zero: true},
		},
		Stats: manifest.Stats{SourceBytes: 8000, StoredBytes: 100, NewBytes: 100, Chunks: 2, ZeroChunks: 1, NewChunks: 1, Seconds: 0.5},
	}
}

func encode(t *testing.T, s *manifest.Snapshot) string {
	t.Helper()
	js, err := manifest.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func testSnapshotRoundTrip(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	want := e.snapshot(repository.NewSnapshotID(), "job-1", t0)
	if err := r.SaveSnapshot(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadSnapshot(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if encode(t, got) != encode(t, want) {
		t.Fatalf("LoadSnapshot:\n got %s\nwant %s", encode(t, got), encode(t, want))
	}

	// The object is the manifest JSON sealed like a chunk whose ID is the
	// JSON's SHA-256 (docs/format.md), or in an encrypted repository, its
	// MAC, sealed with the metadata key.
	obj, err := e.st.Get(ctx, repository.SnapshotsPrefix+want.ID)
	if err != nil {
		t.Fatal(err)
	}
	js := []byte(encode(t, want))
	if e.encrypted {
		h, err := chunk.ParseHeader(obj)
		if err != nil || h.Encryption != chunk.EncryptionMeta || h.ID != chunk.ID(e.keys.ChunkID(js)) {
			t.Errorf("snapshot object header %+v, %v; want a metadata object named by the manifest's MAC", h, err)
		}
		// (Strings long enough that random bytes never hold them: a 3-byte
		// host name turns up in ~455 bytes of ciphertext once in 37,000.)
		for _, clear := range []string{want.Path, `"host":"` + want.Host + `"`} {
			if bytes.Contains(obj, []byte(clear)) {
				t.Errorf("the snapshot object holds %q in the clear", clear)
			}
		}
		return
	}
	h, err := chunk.ParseHeader(obj)
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != chunk.Sum(js) {
		t.Errorf("snapshot object header names %s, want the manifest's SHA-256 %s", h.ID, chunk.Sum(js))
	}
	if raw, err := chunk.Open(nil, chunk.Sum(js), obj); err != nil || !bytes.Equal(raw, js) {
		t.Errorf("snapshot object opens to %q, %v; want the manifest JSON", raw, err)
	}

	ids, err := r.SnapshotIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{want.ID}) {
		t.Errorf("SnapshotIDs = %v, %v; want [%s]", ids, err, want.ID)
	}
}

func testSaveSnapshotAgain(t *testing.T, newEnv func(t *testing.T) env) {
	const id = "5a7e0000000000000000000000000001"
	tests := []struct {
		name    string
		first   *manifest.Snapshot
		second  *manifest.Snapshot
		wantErr error
	}{
		{"same job, same manifest", snapshot(id, "job-1", t0), snapshot(id, "job-1", t0), nil},
		{"same job, retried commit", snapshot(id, "job-1", t0), snapshot(id, "job-1", t0.Add(time.Minute)), nil},
		{"other job", snapshot(id, "job-1", t0), snapshot(id, "job-2", t0), repository.ErrSnapshotExists},
		{"same manifest, no job", snapshot(id, "", t0), snapshot(id, "", t0), repository.ErrSnapshotExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.open(t, true)
			ctx := t.Context()
			tt.first.Hash, tt.second.Hash = e.hashName(), e.hashName()
			if err := r.SaveSnapshot(ctx, tt.first); err != nil {
				t.Fatal(err)
			}
			before, err := e.st.Get(ctx, repository.SnapshotsPrefix+id)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.SaveSnapshot(ctx, tt.second); !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("second SaveSnapshot: err = %v, want %v", err, tt.wantErr)
			}
			after, err := e.st.Get(ctx, repository.SnapshotsPrefix+id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("committed snapshot was overwritten")
			}
			got, err := r.LoadSnapshot(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if encode(t, got) != encode(t, tt.first) {
				t.Fatalf("LoadSnapshot after second save = %s, want the first", encode(t, got))
			}
		})
	}
}

func testSaveSnapshotInvalid(t *testing.T, newEnv func(t *testing.T) env) {
	tests := []struct {
		name string
		snap *manifest.Snapshot
	}{
		{"path escape", snapshot("../x", "job-1", t0)},
		{"nested", snapshot("ab/cd", "job-1", t0)},
		{"upper case", snapshot("ABCDEF", "job-1", t0)},
		{"not hex", snapshot("snapshot1", "job-1", t0)},
		{"too long", snapshot(strings.Repeat("a", 65), "job-1", t0)},
		{"empty", snapshot("", "job-1", t0)},
		{"invalid manifest", func() *manifest.Snapshot {
			s := snapshot("abcdef01", "job-1", t0)
			s.Chunks = s.Chunks[:1]
			return s
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.open(t, true)
			ctx := t.Context()
			tt.snap.Hash = e.hashName()
			if err := r.SaveSnapshot(ctx, tt.snap); err == nil {
				t.Fatalf("SaveSnapshot accepted snapshot %q", tt.snap.ID)
			}
			for info, err := range e.st.List(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				if info.Key != repository.ConfigKey && !strings.HasPrefix(info.Key, repository.KeysPrefix) {
					t.Errorf("rejected snapshot left object %s", info.Key)
				}
			}
			if _, err := r.LoadSnapshot(ctx, tt.snap.ID); !errors.Is(err, repository.ErrSnapshotNotFound) {
				t.Errorf("LoadSnapshot(%q): err = %v, want ErrSnapshotNotFound", tt.snap.ID, err)
			}
		})
	}
}

func testFindSnapshot(t *testing.T, newEnv func(t *testing.T) env) {
	const (
		idA = "aaaa1000000000000000000000000000" // newest, though not the greatest ID
		idB = "aaaa2000000000000000000000000000"
		idC = "bbbb0000000000000000000000000000"
		idD = "dddd" // IDs may be shorter than 32 digits, and prefix others
		idE = "dddd0000000000000000000000000000"
	)
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	for _, s := range []*manifest.Snapshot{
		e.snapshot(idB, "job-b", t0.Add(time.Hour)),
		e.snapshot(idA, "job-a", t0.Add(2*time.Hour)),
		e.snapshot(idC, "job-c", t0),
		e.snapshot(idD, "job-d", t0),
		e.snapshot(idE, "job-e", t0),
	} {
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ref     string
		wantID  string
		wantErr error
	}{
		{ref: idA, wantID: idA},
		{ref: idC, wantID: idC},
		{ref: "aaaa1", wantID: idA},
		{ref: "aaaa2", wantID: idB},
		{ref: "b", wantID: idC},
		{ref: idD, wantID: idD},
		{ref: idE, wantID: idE},
		{ref: "dddd0", wantID: idE},
		{ref: "ddd", wantErr: repository.ErrAmbiguous},
		{ref: "latest", wantID: idA},
		{ref: "aaaa", wantErr: repository.ErrAmbiguous},
		{ref: "a", wantErr: repository.ErrAmbiguous},
		{ref: "cccc", wantErr: repository.ErrSnapshotNotFound},
		{ref: "AAAA1", wantErr: repository.ErrSnapshotNotFound},
		{ref: idA + "0", wantErr: repository.ErrSnapshotNotFound},
		{ref: "", wantErr: repository.ErrSnapshotNotFound},
		{ref: "../x", wantErr: repository.ErrSnapshotNotFound},
		{ref: "../" + idA, wantErr: repository.ErrSnapshotNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := r.FindSnapshot(ctx, tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("FindSnapshot(%q) = %v, %v; want nil, %v", tt.ref, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindSnapshot(%q): %v", tt.ref, err)
			}
			if got.ID != tt.wantID {
				t.Fatalf("FindSnapshot(%q) = %s, want %s", tt.ref, got.ID, tt.wantID)
			}
		})
	}
	for _, id := range []string{"../x", "..", "ABCD", ""} {
		if _, err := r.LoadSnapshot(ctx, id); !errors.Is(err, repository.ErrSnapshotNotFound) {
			t.Errorf("LoadSnapshot(%q): err = %v, want ErrSnapshotNotFound", id, err)
		}
	}
}

func testLatestEmpty(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	if got, err := r.FindSnapshot(t.Context(), "latest"); !errors.Is(err, repository.ErrSnapshotNotFound) {
		t.Fatalf("FindSnapshot(latest) on an empty repository = %v, %v; want ErrSnapshotNotFound", got, err)
	}
}

// testForeignObjects checks that objects under snapshots/ that are not
// snapshots/<id> are not taken for snapshots.
func testForeignObjects(t *testing.T, newEnv func(t *testing.T) env) {
	const id = "f00d0000000000000000000000000001"
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	if err := r.SaveSnapshot(ctx, e.snapshot(id, "job-1", t0)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"snapshots/old/abcd", "snapshots/f00d/f00d", "snapshots/README"} {
		if err := e.st.Put(ctx, key, []byte("not a snapshot")); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("SnapshotIDs = %v, %v; want [%s]", ids, err, id)
	}
	for _, ref := range []string{"latest", "f00d", "abcd"} {
		got, err := r.FindSnapshot(ctx, ref)
		switch {
		case ref == "abcd" && !errors.Is(err, repository.ErrSnapshotNotFound):
			t.Errorf("FindSnapshot(%q): err = %v, want ErrSnapshotNotFound", ref, err)
		case ref != "abcd" && (err != nil || got.ID != id):
			t.Errorf("FindSnapshot(%q) = %v, %v; want %s", ref, got, err, id)
		}
	}
}

func testCorruptSnapshot(t *testing.T, newEnv func(t *testing.T) env) {
	const id = "c0c0000000000000000000000000000f"
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	if err := r.SaveSnapshot(ctx, e.snapshot(id, "job-1", t0)); err != nil {
		t.Fatal(err)
	}
	e.rewrite(t, repository.SnapshotsPrefix+id, func(b []byte) []byte { b[len(b)-2] ^= 0x10; return b })

	for _, ref := range []string{id, "c0c0", "latest"} {
		got, err := r.FindSnapshot(ctx, ref)
		if !errors.Is(err, chunk.ErrCorrupt) || got != nil {
			t.Errorf("FindSnapshot(%q) of a damaged snapshot = %v, %v; want nil, chunk.ErrCorrupt", ref, got, err)
		}
	}
	got, err := r.LoadSnapshot(ctx, id)
	if !errors.Is(err, chunk.ErrCorrupt) || got != nil {
		t.Fatalf("LoadSnapshot of a damaged snapshot = %v, %v; want nil, chunk.ErrCorrupt", got, err)
	}
	if !strings.Contains(err.Error(), id) {
		t.Errorf("error %q does not name snapshot %s", err, id)
	}
	// A damaged snapshot is not replaced by saving under its ID.
	if err := r.SaveSnapshot(ctx, e.snapshot(id, "job-1", t0)); err == nil {
		t.Error("SaveSnapshot over a damaged snapshot succeeded")
	}
}

// testSnapshotHeaders lists snapshots from their header objects, which
// spares reading whole manifests, and falls back to the manifest where a
// header is missing (written before headers were) or damaged; a header
// without its manifest (a commit that stopped in between) is no snapshot.
func testSnapshotHeaders(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	saved := map[string]*manifest.Snapshot{}
	for i, id := range []string{"a0", "b0", "c0"} {
		s := e.snapshot(id, "job-"+id, t0.Add(time.Duration(i)*time.Hour))
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
		saved[id] = s
	}
	// An interrupted commit of d0: its header, no manifest.
	orphan := e.snapshot("d0", "job-d0", t0.Add(5*time.Hour))
	if err := r.SaveSnapshot(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Delete(ctx, repository.SnapshotsPrefix+"d0"); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name   string
		damage func()
	}{
		{"from the headers, a manifest damaged", func() {
			e.rewrite(t, repository.SnapshotsPrefix+"a0", func(b []byte) []byte { b[len(b)-2] ^= 0x10; return b })
		}},
		{"a header missing", func() {
			if err := e.st.Delete(ctx, repository.HeadersPrefix+"b0"); err != nil {
				t.Fatal(err)
			}
		}},
		{"a header damaged", func() {
			e.rewrite(t, repository.HeadersPrefix+"c0", func(b []byte) []byte { b[len(b)-2] ^= 0x10; return b })
		}},
	}
	for _, step := range steps {
		step.damage()
		got, err := r.SnapshotHeaders(ctx)
		if err != nil {
			t.Fatalf("%s: SnapshotHeaders: %v", step.name, err)
		}
		var ids []string
		for _, h := range got {
			ids = append(ids, h.ID)
			want := saved[h.ID]
			if want == nil || !h.Time.Equal(want.Time) || h.Stats != want.Stats || h.JobID != want.JobID || h.Chunks != nil {
				t.Errorf("%s: header %+v does not describe snapshot %+v without its chunks", step.name, h, want)
			}
		}
		if !slices.Equal(ids, []string{"a0", "b0", "c0"}) {
			t.Errorf("%s: SnapshotHeaders lists %v, want [a0 b0 c0]", step.name, ids)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	id := chunk.Sum([]byte("x"))
	if got, want := repository.ChunkKey(id), "chunks/"+id.String()[:2]+"/"+id.String(); got != want {
		t.Errorf("ChunkKey = %q, want %q", got, want)
	}
	sid := repository.NewSnapshotID()
	if len(sid) != 32 || strings.Trim(sid, "0123456789abcdef") != "" {
		t.Errorf("NewSnapshotID = %q, want 32 lowercase hex digits", sid)
	}
}

// testOversizedSnapshot: a snapshot object whose manifest would be larger
// than manifest.MaxSize (a zstd bomb in a hostile repository: a small
// object that decodes to gigabytes of JSON) is refused before it is
// decoded, and so is its header when the header is the bomb.
func testOversizedSnapshot(t *testing.T, newEnv func(t *testing.T) env) {
	e := newEnv(t)
	r := e.open(t, true)
	ctx := t.Context()
	const id = "b0b0"
	good := e.snapshot(id, "job-b", t0)
	if err := r.SaveSnapshot(ctx, good); err != nil {
		t.Fatal(err)
	}
	// A sealed object claiming MaxSize+1 bytes of JSON: zeros, a few KiB
	// of zstd frame. Its hash cannot match, but it must not be decoded.
	bomb := make([]byte, manifest.MaxSize+1)
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	obj := s.Seal(nil, chunk.Sum(bomb), bomb)
	bomb = nil
	if len(obj) > 1<<20 {
		t.Fatalf("the bomb object holds %d bytes; want a small one", len(obj))
	}
	for _, key := range []string{repository.HeadersPrefix + id, repository.SnapshotsPrefix + id} {
		if err := e.st.Put(ctx, key, obj); err != nil {
			t.Fatal(err)
		}
	}
	// ErrTooLarge comes from the header check, before the object is read.
	_, err = r.LoadSnapshot(ctx, id)
	_, herr := r.LoadSnapshotHeader(ctx, id)
	if !errors.Is(err, manifest.ErrTooLarge) || !errors.Is(herr, manifest.ErrTooLarge) {
		t.Fatalf("LoadSnapshot = %v, LoadSnapshotHeader = %v; want manifest.ErrTooLarge", err, herr)
	}
}
