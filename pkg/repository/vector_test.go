package repository_test

// The encrypted repository in testdata/encrypted is a known-answer vector
// for independent decoders (docs/format.md section 9): a volume snapshot
// of testdata/encrypted.volume, password testdata/encrypted.password. It
// was written by this package (`go test -run Vector -update`, which makes
// a new one: new random keys, ephemeral keys and nonces); the tests read
// it back with this package and with decodeIndependently, which follows
// the text of docs/format.md and docs/encryption.md using nothing of
// bulkbackup's: stdlib, golang.org/x/crypto, age and zstd.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
)

var update = flag.Bool("update", false, "rewrite the encrypted repository vector in testdata/")

const (
	vectorDir      = "testdata/encrypted"
	vectorVolume   = "testdata/encrypted.volume"
	vectorPassword = "testdata/encrypted.password"
	vectorSnapshot = "5eed0000000000000000000000000001"
	vectorChunk    = 4096
)

// vectorVolumeBytes is the volume of the vector: a chunk of text (stored
// compressed), one of random bytes (stored as they are), and a short last
// chunk of zeros (not stored).
func vectorVolumeBytes() []byte {
	text := bytes.Repeat([]byte("bulkbackup encrypted repository vector\n"), 200)[:vectorChunk]
	random := make([]byte, vectorChunk)
	_, _ = rand.Read(random)
	return append(append(text, random...), make([]byte, 1808)...)
}

// writeVector makes the vector repository in testdata.
func writeVector(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(vectorDir); err != nil {
		t.Fatal(err)
	}
	vol := vectorVolumeBytes()
	const password = "correct horse battery staple"
	st, err := dirstore.New(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := repository.Init(t.Context(), st, repository.InitOptions{Wrap: wrapPassword(password)})
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := chunk.NewSealer(chunk.LevelFastest)
	snap := &manifest.Snapshot{
		Version: 1, ID: vectorSnapshot, JobID: "vector", Time: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC),
		Host: "vectorhost", Path: "/dev/vector", Mode: manifest.ModeVolume, SourceKind: manifest.KindFile,
		Size: int64(len(vol)), ChunkSize: vectorChunk, Hash: repository.HashHMACSHA256, Compression: "zstd", Level: "fastest",
	}
	for off := 0; off < len(vol); off += vectorChunk {
		raw := vol[off:min(off+vectorChunk, len(vol))]
		c := manifest.Chunk{Offset: int64(off), Length: int64(len(raw))}
		if chunk.IsZero(raw) {
			c.Zero = true
		} else {
			id, err := r.ChunkID(raw)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := r.SealChunk(sealer, nil, id, raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.PutChunk(t.Context(), id, obj); err != nil {
				t.Fatal(err)
			}
			c.Hash, c.StoredSize = id.String(), int64(len(obj))
		}
		snap.Chunks = append(snap.Chunks, c)
	}
	if err := r.SaveSnapshot(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(vectorDir, ".tmp-writes"))
	os.RemoveAll(filepath.Join(vectorDir, "grants"))
	if err := os.WriteFile(vectorVolume, vol, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorPassword, []byte(password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// vectorCopy copies the vector repository to a temporary directory: a
// store opened on testdata would write to it.
func vectorCopy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(vectorDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(vectorDir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readVector(t *testing.T) (vol []byte, password string) {
	t.Helper()
	vol, err := os.ReadFile(vectorVolume)
	if err != nil {
		t.Fatalf("%v (go test -run Vector -update writes it)", err)
	}
	pw, err := os.ReadFile(vectorPassword)
	if err != nil {
		t.Fatal(err)
	}
	return vol, strings.TrimSuffix(string(pw), "\n")
}

// TestVectorRepository reads the vector with this package.
func TestVectorRepository(t *testing.T) {
	if *update {
		writeVector(t)
	}
	vol, password := readVector(t)
	st, err := dirstore.New(vectorCopy(t))
	if err != nil {
		t.Fatal(err)
	}
	locked, err := repository.Open(t.Context(), st, repository.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := locked.Unlock(t.Context(), password2(t, password))
	if err != nil {
		t.Fatal(err)
	}
	r, err := locked.WithCredentials(repository.Credentials{Write: &u.Keys.WriteKey, Open: keyring.NewOpener(u.Keys.Private)})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.FindSnapshot(t.Context(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, c := range snap.Chunks {
		if c.Zero {
			got = append(got, make([]byte, c.Length)...)
			continue
		}
		id, _ := chunk.ParseID(c.Hash)
		if got, err = r.GetChunk(t.Context(), id, got); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, vol) {
		t.Fatal("the vector's snapshot does not restore to its volume")
	}
}

func password2(t *testing.T, p string) age.Identity {
	t.Helper()
	id, err := keyring.PasswordIdentity([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestVectorIndependentDecoder restores the vector's volume by following
// the specification alone.
func TestVectorIndependentDecoder(t *testing.T) {
	vol, password := readVector(t)
	got, err := decodeIndependently(vectorDir, password)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vol) {
		t.Fatal("the independent decoder restores other bytes than the vector's volume")
	}
}

// decodeIndependently restores the newest snapshot of the volume backup in
// the encrypted directory repository dir, opened with password, as
// docs/format.md section 9 says, checking every step.
func decodeIndependently(dir, password string) ([]byte, error) {
	read := func(key string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, filepath.FromSlash(key))) }
	expand := func(key []byte, info string) []byte {
		out, err := hkdf.Expand(sha256.New, key, info, 32)
		if err != nil {
			panic(err)
		}
		return out
	}
	mac := func(key, data []byte) []byte { m := hmac.New(sha256.New, key); m.Write(data); return m.Sum(nil) }

	// 1. The config, and the keys from the key object the password opens.
	var cfg struct {
		Version    int    `json:"version"`
		ID         string `json:"id"`
		Hash       string `json:"hash"`
		Encryption string `json:"encryption"`
		KeyCheck   string `json:"key_check"`
	}
	data, err := read("config")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &cfg); err != nil || cfg.Version != 2 || cfg.Hash != "hmac-sha256" || cfg.Encryption != "bulkbackup-v1" {
		return nil, fmt.Errorf("config %s: not an encrypted repository (%v)", data, err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, err
	}
	scrypt, err := age.NewScryptIdentity(password)
	if err != nil {
		return nil, err
	}
	var idRoot, metaRoot []byte
	var priv *ecdh.PrivateKey
	for _, e := range entries {
		data, err := read("keys/" + e.Name())
		if err != nil {
			return nil, err
		}
		var ko struct {
			ID, Repository, Data string
		}
		if err := json.Unmarshal(data, &ko); err != nil || ko.ID != e.Name() || ko.Repository != cfg.ID {
			continue
		}
		sealed, err := base64.StdEncoding.DecodeString(ko.Data)
		if err != nil {
			continue
		}
		rd, err := age.Decrypt(bytes.NewReader(sealed), scrypt)
		if err != nil {
			continue // another key's object
		}
		payload, err := io.ReadAll(rd)
		if err != nil {
			return nil, err
		}
		var p struct{ Repository, Key, ID, Meta, Private string }
		if err := json.Unmarshal(payload, &p); err != nil || p.Repository != cfg.ID || p.Key != ko.ID {
			return nil, fmt.Errorf("key object %s: bad payload", ko.ID)
		}
		idRoot, _ = base64.StdEncoding.DecodeString(p.ID)
		metaRoot, _ = base64.StdEncoding.DecodeString(p.Meta)
		pb, _ := base64.StdEncoding.DecodeString(p.Private)
		if priv, err = ecdh.X25519().NewPrivateKey(pb); err != nil {
			return nil, err
		}
		break
	}
	if priv == nil {
		return nil, errors.New("no key object opens with the password")
	}
	macKey := expand(idRoot, "bulkbackup chunk id v1")
	checkKey := expand(idRoot, "bulkbackup key check v1")
	if check := mac(checkKey, append(append([]byte(cfg.ID), 0), priv.PublicKey().Bytes()...)); hex.EncodeToString(check) != cfg.KeyCheck {
		return nil, errors.New("the key check differs: not this repository's keys")
	}
	metaAEAD, err := chacha20poly1305.NewX(expand(metaRoot, "bulkbackup meta v1"))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer dec.Close()

	// header parses the 60-byte fixed header.
	type header struct {
		comp, enc, hash byte
		headerLen       uint32
		rawLen          uint64
		id              []byte
		payloadLen      uint64
	}
	parse := func(obj []byte, wantEnc byte) (header, error) {
		if len(obj) < 60 || string(obj[:4]) != "BKCH" || obj[4] != 2 {
			return header{}, errors.New("not a format 2 object")
		}
		h := header{comp: obj[5], enc: obj[6], hash: obj[7], headerLen: binary.LittleEndian.Uint32(obj[8:]),
			rawLen: binary.LittleEndian.Uint64(obj[12:]), id: obj[20:52], payloadLen: binary.LittleEndian.Uint64(obj[52:])}
		wantLen := map[byte]uint32{1: 104, 2: 60}[wantEnc]
		if h.enc != wantEnc || h.hash != 2 || h.headerLen != wantLen || uint64(len(obj)) != uint64(h.headerLen)+h.payloadLen {
			return h, fmt.Errorf("header %+v", h)
		}
		return h, nil
	}
	// decompress decodes a plaintext payload and checks its MAC.
	decompress := func(h header, p, want []byte) ([]byte, error) {
		raw := p
		if h.comp == 1 {
			var err error
			if raw, err = dec.DecodeAll(p, nil); err != nil {
				return nil, err
			}
		}
		if uint64(len(raw)) != h.rawLen || !hmac.Equal(mac(macKey, raw), want) {
			return nil, errors.New("the data is not the object's")
		}
		return raw, nil
	}

	// 2. The newest snapshot's manifest, a metadata object.
	var snapID string
	snaps, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil || len(snaps) != 1 {
		return nil, fmt.Errorf("want one snapshot: %v", err)
	}
	snapID = snaps[0].Name()
	key := "snapshots/" + snapID
	obj, err := read(key)
	if err != nil {
		return nil, err
	}
	h, err := parse(obj, 2)
	if err != nil {
		return nil, err
	}
	sealed := obj[h.headerLen:]
	aad := append(bytes.Clone(obj[:h.headerLen]), key...)
	plain, err := metaAEAD.Open(nil, sealed[:24], sealed[24:], aad)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	js, err := decompress(h, plain, h.id)
	if err != nil {
		return nil, err
	}
	var m struct {
		ID     string
		Size   int64
		Chunks []struct {
			Offset, Length int64
			Hash           string
			Zero           bool
		}
	}
	if err := json.Unmarshal(js, &m); err != nil || m.ID != snapID {
		return nil, fmt.Errorf("manifest: %v", err)
	}

	// 3. Every chunk, a content object.
	out := make([]byte, m.Size)
	for _, c := range m.Chunks {
		if c.Zero {
			continue
		}
		want, _ := hex.DecodeString(c.Hash)
		obj, err := read("chunks/" + c.Hash[:2] + "/" + c.Hash)
		if err != nil {
			return nil, err
		}
		h, err := parse(obj, 1)
		if err != nil || !bytes.Equal(h.id, want) {
			return nil, fmt.Errorf("chunk %s: %v", c.Hash, err)
		}
		eph, nonce := obj[60:92], obj[92:104]
		ephPub, err := ecdh.X25519().NewPublicKey(eph)
		if err != nil {
			return nil, err
		}
		shared, err := priv.ECDH(ephPub)
		if err != nil {
			return nil, err
		}
		sessionKey, err := hkdf.Key(sha256.New, shared, append(bytes.Clone(eph), priv.PublicKey().Bytes()...), "bulkbackup session v1", 32)
		if err != nil {
			return nil, err
		}
		objectKey := expand(sessionKey, "bulkbackup object v1\x00"+string(want))
		block, err := aes.NewCipher(objectKey)
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		plain, err := gcm.Open(nil, nonce, obj[104:], obj[:104])
		if err != nil {
			return nil, fmt.Errorf("chunk %s: %w", c.Hash, err)
		}
		raw, err := decompress(h, plain, want)
		if err != nil || int64(len(raw)) != c.Length {
			return nil, fmt.Errorf("chunk %s: %v", c.Hash, err)
		}
		copy(out[c.Offset:], raw)
	}
	return out, nil
}
