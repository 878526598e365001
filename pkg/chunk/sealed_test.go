package chunk_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
)

// testKeys returns fresh repository keys and a Sealer to their public key.
func testKeys(t testing.TB) (*keyring.Keys, *keyring.Sealer) {
	t.Helper()
	k, err := keyring.GenerateKeys("repo-under-test")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keyring.NewSealer(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	return k, ks
}

func TestSealContentRoundTrip(t *testing.T) {
	t.Parallel()
	k, ks := testKeys(t)
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	opener := keyring.NewOpener(k.Private)
	for _, tt := range []struct {
		name     string
		raw      []byte
		wantComp chunk.Compression
	}{
		{"empty", nil, chunk.CompressionNone},
		{"text", textBytes(1 << 20), chunk.CompressionZstd},
		{"random", randomBytes(256<<10, 5), chunk.CompressionNone},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := chunk.ID(k.ChunkID(tt.raw))
			if id == chunk.Sum(tt.raw) {
				t.Fatal("the chunk ID of an encrypted repository is the plain SHA-256")
			}
			obj := s.SealContent([]byte("prefix"), id, tt.raw, ks.Next())[6:]
			h, err := chunk.ParseHeader(obj)
			if err != nil {
				t.Fatal(err)
			}
			if h.Encryption != chunk.EncryptionContent || h.HashAlg != chunk.HashHMACSHA256 || h.Compression != tt.wantComp ||
				h.HeaderLen != chunk.ContentHeaderSize || h.ID != id || h.RawLen != int64(len(tt.raw)) {
				t.Fatalf("header = %+v", h)
			}
			if size, ok := h.Size(); !ok || size != int64(len(obj)) {
				t.Fatalf("header says %d bytes (%v), object has %d", size, ok, len(obj))
			}
			if tt.wantComp == chunk.CompressionNone && h.PayloadLen != int64(len(tt.raw))+chunk.ContentOverhead {
				t.Fatalf("payload_len %d for %d raw bytes stored uncompressed", h.PayloadLen, len(tt.raw))
			}
			if len(tt.raw) > 64 && bytes.Contains(obj, tt.raw[:64]) {
				t.Fatal("the object holds the raw bytes in the clear")
			}
			if _, err := chunk.Open(nil, id, bytes.Clone(obj)); !errors.Is(err, chunk.ErrCorrupt) {
				t.Fatalf("Open (plaintext) of an encrypted object = %v, want ErrCorrupt", err)
			}
			got, err := chunk.OpenContent([]byte("x"), id, bytes.Clone(obj), opener, &k.WriteKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[1:], tt.raw) {
				t.Fatalf("OpenContent returned %d bytes, want %d", len(got)-1, len(tt.raw))
			}
		})
	}
}

// TestOpenContentCatchesEveryByte flips each byte of an encrypted object in
// turn, header, extension, ciphertext and tag: every one is caught.
func TestOpenContentCatchesEveryByte(t *testing.T) {
	t.Parallel()
	k, ks := testKeys(t)
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	opener := keyring.NewOpener(k.Private)
	for _, raw := range [][]byte{textBytes(2000), randomBytes(300, 6)} {
		id := chunk.ID(k.ChunkID(raw))
		good := s.SealContent(nil, id, raw, ks.Next())
		for i := range good {
			for _, bit := range []byte{0x01, 0x80} {
				obj := bytes.Clone(good)
				obj[i] ^= bit
				if _, err := chunk.OpenContent(nil, id, obj, opener, &k.WriteKey); !errors.Is(err, chunk.ErrCorrupt) {
					t.Fatalf("byte %d of %d xor %#x: OpenContent = %v, want ErrCorrupt", i, len(good), bit, err)
				}
			}
		}
		for _, cut := range []int{1, chunk.ContentOverhead, len(good) - chunk.ContentHeaderSize} {
			if _, err := chunk.OpenContent(nil, id, bytes.Clone(good[:len(good)-cut]), opener, &k.WriteKey); !errors.Is(err, chunk.ErrCorrupt) {
				t.Fatalf("cut by %d: OpenContent = %v, want ErrCorrupt", cut, err)
			}
		}
		if _, err := chunk.OpenContent(nil, id, append(bytes.Clone(good), 0), opener, &k.WriteKey); !errors.Is(err, chunk.ErrCorrupt) {
			t.Fatalf("extended: OpenContent = %v, want ErrCorrupt", err)
		}
	}
}

// TestOpenContentRefuses: objects that authenticate but are not the chunk
// asked for, or were sealed to other keys, are refused.
func TestOpenContentRefuses(t *testing.T) {
	t.Parallel()
	k, ks := testKeys(t)
	other, otherSealer := testKeys(t)
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	raw := textBytes(5000)
	id := chunk.ID(k.ChunkID(raw))
	opener := keyring.NewOpener(k.Private)

	// A writer (any holder of a write key can seal) stores other bytes
	// under the chunk's name: the AEAD holds, the MAC check does not.
	forged := s.SealContent(nil, id, []byte("not the chunk"), ks.Next())
	if _, err := chunk.OpenContent(nil, id, forged, opener, &k.WriteKey); !errors.Is(err, chunk.ErrCorrupt) {
		t.Errorf("forged content: %v, want ErrCorrupt", err)
	}
	// Sealed to another repository's key.
	foreign := s.SealContent(nil, id, raw, otherSealer.Next())
	if _, err := chunk.OpenContent(nil, id, foreign, opener, &k.WriteKey); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("sealed to another key: %v, want ErrAuth", err)
	}
	// The other repository's private key does not open ours.
	obj := s.SealContent(nil, id, raw, ks.Next())
	if _, err := chunk.OpenContent(nil, id, bytes.Clone(obj), keyring.NewOpener(other.Private), &k.WriteKey); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("other private key: %v, want ErrAuth", err)
	}
	// A plaintext object where an encrypted one belongs.
	plain := s.Seal(nil, chunk.Sum(raw), raw)
	if _, err := chunk.OpenContent(nil, chunk.Sum(raw), plain, opener, &k.WriteKey); !errors.Is(err, chunk.ErrCorrupt) {
		t.Errorf("plaintext object: %v, want ErrCorrupt", err)
	}
}

// TestOpenContentWithGrant: a host holding a grant opens exactly the
// objects it covers, and no others.
func TestOpenContentWithGrant(t *testing.T) {
	t.Parallel()
	k, ks := testKeys(t)
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	opener := keyring.NewOpener(k.Private)
	a, b := textBytes(3000), randomBytes(3000, 7)
	ida, idb := chunk.ID(k.ChunkID(a)), chunk.ID(k.ChunkID(b))
	obja, objb := s.SealContent(nil, ida, a, ks.Next()), s.SealContent(nil, idb, b, ks.Next())
	ha, _ := chunk.ParseHeader(obja)
	g := keyring.NewGrant(k.Repository, "job-1", "", time.Now().Add(time.Hour))
	if err := g.Add(opener, ha.Ephemeral, ha.ID); err != nil {
		t.Fatal(err)
	}
	host := k.WithoutMeta()
	got, err := chunk.OpenContent(nil, ida, obja, g, host)
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("granted object: %v", err)
	}
	if _, err := chunk.OpenContent(nil, idb, objb, g, host); !errors.Is(err, keyring.ErrWrongJob) || !errors.Is(err, chunk.ErrCorrupt) {
		t.Fatalf("object outside the grant: %v, want ErrWrongJob", err)
	}
}

func TestSealMeta(t *testing.T) {
	t.Parallel()
	k, _ := testKeys(t)
	s, _ := chunk.NewSealer(chunk.LevelDefault)
	raw := []byte(`{"version":1,"id":"abc","files":[` + string(bytes.Repeat([]byte(`{"path":"etc/passwd"},`), 100)) + `{}]}`)
	id := chunk.ID(k.ChunkID(raw))
	good, err := s.SealMeta(nil, id, raw, &k.WriteKey, "snapshots/abc")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(good, []byte("passwd")) {
		t.Fatal("metadata object holds its file names in the clear")
	}
	if _, err := s.SealMeta(nil, id, raw, k.WithoutMeta(), "snapshots/abc"); !errors.Is(err, keyring.ErrNoMeta) {
		t.Errorf("SealMeta without metadata key: %v, want ErrNoMeta", err)
	}
	readers := map[string]func(obj []byte, name string, wk *keyring.WriteKey) ([]byte, error){
		"OpenMetaStream": func(obj []byte, name string, wk *keyring.WriteKey) ([]byte, error) {
			rd, err := chunk.OpenMetaStream(id, bytes.Clone(obj), 1<<20, wk, name)
			if err != nil {
				return nil, err
			}
			defer rd.Close()
			return io.ReadAll(rd)
		},
		"OpenMeta": func(obj []byte, name string, wk *keyring.WriteKey) ([]byte, error) {
			return chunk.OpenMeta(nil, id, bytes.Clone(obj), wk, name)
		},
	}
	for what, read := range readers {
		if got, err := read(good, "snapshots/abc", &k.WriteKey); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%s = %v (%d bytes)", what, err, len(got))
		}
		if _, err := read(good, "headers/abc", &k.WriteKey); !errors.Is(err, keyring.ErrAuth) {
			t.Errorf("%s under another name: %v, want ErrAuth", what, err)
		}
		if _, err := read(good, "snapshots/abc", k.WithoutMeta()); !errors.Is(err, keyring.ErrNoMeta) {
			t.Errorf("%s with a key without metadata: %v, want ErrNoMeta", what, err)
		}
		for i := range good {
			obj := bytes.Clone(good)
			obj[i] ^= 0x04
			if _, err := read(obj, "snapshots/abc", &k.WriteKey); err == nil {
				t.Fatalf("%s: byte %d of %d changed: opened", what, i, len(good))
			}
		}
	}
}

func FuzzOpenContent(f *testing.F) {
	k, ks := testKeys(f)
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	opener := keyring.NewOpener(k.Private)
	for _, raw := range [][]byte{nil, textBytes(4096), randomBytes(100, 8)} {
		f.Add(s.SealContent(nil, chunk.ID(k.ChunkID(raw)), raw, ks.Next()))
	}
	meta, _ := s.SealMeta(nil, chunk.ID(k.ChunkID([]byte("{}"))), []byte("{}"), &k.WriteKey, "headers/1")
	f.Add(meta)
	f.Fuzz(func(t *testing.T, obj []byte) {
		h, err := chunk.ParseHeader(obj)
		if err != nil {
			return
		}
		got, err := chunk.OpenContent(nil, h.ID, bytes.Clone(obj), opener, &k.WriteKey)
		if err == nil && k.ChunkID(got) != h.ID {
			t.Fatal("OpenContent accepted data whose MAC is not its ID")
		}
		if got, err := chunk.OpenMeta(nil, h.ID, bytes.Clone(obj), &k.WriteKey, "headers/1"); err == nil && k.ChunkID(got) != h.ID {
			t.Fatal("OpenMeta accepted data whose MAC is not its ID")
		}
		if rd, err := chunk.OpenMetaStream(h.ID, bytes.Clone(obj), 1<<20, &k.WriteKey, "headers/1"); err == nil {
			got, err := io.ReadAll(rd)
			rd.Close()
			if err == nil && k.ChunkID(got) != h.ID {
				t.Fatal("OpenMetaStream accepted data whose MAC is not its ID")
			}
		}
	})
}

func BenchmarkSealContent(b *testing.B) {
	k, ks := testKeys(b)
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	raw := append(textBytes(2<<20), randomBytes(2<<20, 3)...)
	id := chunk.ID(k.ChunkID(raw))
	buf := make([]byte, 0, s.MaxSealedSize(len(raw)))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		buf = s.SealContent(buf[:0], id, raw, ks.Next())
	}
}

func BenchmarkOpenContent(b *testing.B) {
	k, ks := testKeys(b)
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	raw := textBytes(4 << 20)
	id := chunk.ID(k.ChunkID(raw))
	obj := s.SealContent(nil, id, raw, ks.Next())
	opener := keyring.NewOpener(k.Private)
	work := make([]byte, len(obj))
	buf := make([]byte, 0, len(raw))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, obj)
		var err error
		if buf, err = chunk.OpenContent(buf[:0], id, work, opener, &k.WriteKey); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMaxSealedSize: a buffer of MaxSealedSize capacity holds Seal's,
// SealContent's and SealMeta's output without growing, for data zstd
// makes larger (random) as well as smaller, at every level.
func TestMaxSealedSize(t *testing.T) {
	t.Parallel()
	k, ks := testKeys(t)
	for _, level := range []chunk.Level{chunk.LevelFastest, chunk.LevelDefault, chunk.LevelBetter, chunk.LevelBest} {
		s, err := chunk.NewSealer(level)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range [][]byte{randomBytes(4<<20, 7), textBytes(1 << 20), randomBytes(100, 8)} {
			id := chunk.ID(k.ChunkID(raw))
			for name, seal := range map[string]func(dst []byte) []byte{
				"Seal":        func(dst []byte) []byte { return s.Seal(dst, id, raw) },
				"SealContent": func(dst []byte) []byte { return s.SealContent(dst, id, raw, ks.Next()) },
				"SealMeta": func(dst []byte) []byte {
					out, err := s.SealMeta(dst, id, raw, &k.WriteKey, "snapshots/x")
					if err != nil {
						t.Fatal(err)
					}
					return out
				},
			} {
				buf := make([]byte, 0, s.MaxSealedSize(len(raw)))
				if out := seal(buf); &out[:1][0] != &buf[:1][0] {
					t.Errorf("%s of %d bytes at level %v grew a buffer of MaxSealedSize %d to %d", name, len(raw), level, cap(buf), cap(out))
				}
			}
		}
	}
}
