package keyring_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
)

// testWorkFactor keeps scrypt fast in tests (1 MiB, milliseconds).
const testWorkFactor = 10

func newKeys(t testing.TB) *keyring.Keys {
	t.Helper()
	k, err := keyring.GenerateKeys("repo-" + t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealer(t testing.TB, k *keyring.WriteKey) *keyring.Sealer {
	t.Helper()
	s, err := keyring.NewSealer(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sealed is one content object as pkg/chunk would store it: a header that
// carries the ephemeral key and nonce (the AAD), then ciphertext || tag.
type sealed struct {
	ephemeral [keyring.EphemeralSize]byte
	id        [keyring.KeySize]byte
	nonce     [keyring.NonceSize]byte
	header    []byte
	payload   []byte
}

func seal(t testing.TB, s *keyring.Sealer, k *keyring.WriteKey, plaintext []byte) sealed {
	t.Helper()
	env := s.Next()
	o := sealed{ephemeral: env.Ephemeral(), id: k.ChunkID(plaintext), nonce: env.Nonce()}
	o.header = append([]byte("BKCH-test-header:"), o.ephemeral[:]...)
	o.header = append(o.header, o.nonce[:]...)
	o.header = append(o.header, o.id[:]...)
	o.payload = env.Seal(nil, o.id, plaintext, o.header)
	return o
}

func (o sealed) open(op interface {
	Open(dst []byte, ephemeral [keyring.EphemeralSize]byte, id [keyring.KeySize]byte, nonce [keyring.NonceSize]byte, ciphertext, aad []byte) ([]byte, error)
}) ([]byte, error) {
	return op.Open(nil, o.ephemeral, o.id, o.nonce, o.payload, o.header)
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s, o := newSealer(t, &k.WriteKey), keyring.NewOpener(k.Private)
	for _, n := range []int{0, 1, 15, 16, 17, 4096, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			plain := make([]byte, n)
			rand.Read(plain)
			obj := seal(t, s, &k.WriteKey, plain)
			if len(obj.payload) != n+keyring.Overhead {
				t.Errorf("payload is %d bytes, want %d", len(obj.payload), n+keyring.Overhead)
			}
			if n >= 16 && bytes.Contains(obj.payload, plain[:16]) {
				t.Error("the payload contains the plaintext")
			}
			got, err := obj.open(o)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Error("opened bytes differ")
			}
		})
	}
}

// TestSealInPlace seals and opens the way pkg/chunk does: header and
// payload in one buffer, the payload encrypted and decrypted where it lies.
func TestSealInPlace(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s, o := newSealer(t, &k.WriteKey), keyring.NewOpener(k.Private)
	plain := bytes.Repeat([]byte("bulk"), 1000)
	id := k.ChunkID(plain)
	env := s.Next()
	eph, nonce := env.Ephemeral(), env.Nonce()
	hdr := append(append([]byte("HDR"), eph[:]...), nonce[:]...)
	hl := len(hdr)
	obj := make([]byte, 0, hl+len(plain)+keyring.Overhead)
	obj = append(append(obj, hdr...), plain...)
	ct := env.Seal(obj[hl:hl], id, obj[hl:], obj[:hl])
	if &ct[0] != &obj[hl] {
		t.Fatal("Seal did not encrypt in place")
	}
	obj = obj[:hl+len(ct)]
	pt, err := o.Open(obj[hl:hl], eph, id, nonce, obj[hl:], obj[:hl])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pt, plain) || &pt[0] != &obj[hl] {
		t.Error("Open did not decrypt in place to the plaintext")
	}
}

// TestTamper changes every byte of a sealed object, its header (the AAD)
// and the parameters it is opened with, one at a time: each change must be
// caught as ErrAuth.
func TestTamper(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s, o := newSealer(t, &k.WriteKey), keyring.NewOpener(k.Private)
	obj := seal(t, s, &k.WriteKey, []byte("a small chunk of data that must not change"))
	if _, err := obj.open(o); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, what string, i int, m sealed) {
		t.Helper()
		got, err := m.open(o)
		if !errors.Is(err, keyring.ErrAuth) {
			t.Errorf("%s byte %d changed: err = %v, want ErrAuth", what, i, err)
		}
		if got != nil {
			t.Errorf("%s byte %d changed: returned %d bytes", what, i, len(got))
		}
	}
	for i := range obj.payload {
		m := obj
		m.payload = bytes.Clone(obj.payload)
		m.payload[i] ^= 0x01
		check(t, "payload", i, m)
	}
	for i := range obj.header {
		m := obj
		m.header = bytes.Clone(obj.header)
		m.header[i] ^= 0x80
		check(t, "header", i, m)
	}
	for i := range obj.nonce {
		m := obj
		m.nonce[i] ^= 0x01
		check(t, "nonce", i, m)
	}
	for i := range obj.ephemeral {
		m := obj
		m.ephemeral[i] ^= 0x01
		check(t, "ephemeral", i, m)
	}
	for i := range obj.id {
		m := obj
		m.id[i] ^= 0x01
		check(t, "id", i, m)
	}
	for _, n := range []int{0, 1, keyring.Overhead - 1, len(obj.payload) - 1} {
		m := obj
		m.payload = obj.payload[:n]
		check(t, "truncated to", n, m)
	}
	m := obj
	m.payload = append(bytes.Clone(obj.payload), 0)
	check(t, "extended by", 1, m)
}

func TestOpenWithOtherKey(t *testing.T) {
	t.Parallel()
	k, other := newKeys(t), newKeys(t)
	obj := seal(t, newSealer(t, &k.WriteKey), &k.WriteKey, []byte("secret"))
	if _, err := obj.open(keyring.NewOpener(other.Private)); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("err = %v, want ErrAuth", err)
	}
}

// TestWriteKeyCannotOpen checks that the write key, as the fleet receives
// it, holds nothing that opens content: not the private key, and none of
// its secrets works as one.
func TestWriteKeyCannotOpen(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	obj := seal(t, newSealer(t, &k.WriteKey), &k.WriteKey, []byte("only restore may read this"))
	file, err := k.WriteKey.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	wk, err := keyring.ParseWriteKey(file)
	if err != nil {
		t.Fatal(err)
	}
	priv := k.Private.Bytes()
	body, _ := base64.StdEncoding.DecodeString(strings.Split(string(file), "\n")[1])
	for _, enc := range []string{string(priv), hex.EncodeToString(priv), base64.StdEncoding.EncodeToString(priv)} {
		if strings.Contains(string(file), enc) || strings.Contains(string(body), enc) {
			t.Fatal("the write key file contains the private key")
		}
	}
	for name, secret := range map[string][keyring.KeySize]byte{"id": wk.ID, "meta": *wk.Meta, "public": [32]byte(wk.Public.Bytes())} {
		p, err := ecdh.X25519().NewPrivateKey(secret[:])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obj.open(keyring.NewOpener(p)); !errors.Is(err, keyring.ErrAuth) {
			t.Errorf("the %s key as a private key: err = %v, want ErrAuth", name, err)
		}
	}
}

func TestSealerSessions(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s := newSealer(t, &k.WriteKey)
	a, b := s.Next(), s.Next()
	if a.Ephemeral() != b.Ephemeral() {
		t.Error("two objects in a row got different sessions")
	}
	if a.Nonce() == b.Nonce() {
		t.Error("two objects got the same nonce")
	}
	s.Rotate()
	c := s.Next()
	if c.Ephemeral() == a.Ephemeral() {
		t.Error("Rotate did not start a new session")
	}
	// An envelope of the old session still seals and opens after rotation.
	id := k.ChunkID([]byte("x"))
	ct := a.Seal(nil, id, []byte("x"), nil)
	if _, err := keyring.NewOpener(k.Private).Open(nil, a.Ephemeral(), id, a.Nonce(), ct, nil); err != nil {
		t.Error(err)
	}
}

func TestEnvelopeSealTwicePanics(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	env := newSealer(t, &k.WriteKey).Next()
	env.Seal(nil, [32]byte{}, []byte("a"), nil)
	defer func() {
		if recover() == nil {
			t.Error("a second Seal with the same envelope (and nonce) did not panic")
		}
	}()
	env.Seal(nil, [32]byte{}, []byte("b"), nil)
}

// smallOrder are X25519 public keys of small order: ECDH with them gives
// the all-zero secret.
var smallOrder = [][]byte{
	make([]byte, 32),
	append([]byte{1}, make([]byte, 31)...),
	mustHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestSmallOrderKeysRefused(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	o := keyring.NewOpener(k.Private)
	for _, b := range smallOrder {
		pub, err := ecdh.X25519().NewPublicKey(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keyring.NewSealer(pub); err == nil {
			t.Errorf("NewSealer(%x) accepted a small-order key", b)
		}
		wk := k.WriteKey
		wk.Public = pub
		if _, err := wk.Marshal(); err == nil {
			t.Errorf("Marshal with public %x succeeded", b)
		}
		if _, err := o.Open(nil, [32]byte(b), [32]byte{}, [12]byte{}, make([]byte, 32), nil); !errors.Is(err, keyring.ErrAuth) {
			t.Errorf("Open with ephemeral %x: err = %v, want ErrAuth", b, err)
		}
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s, o := newSealer(t, &k.WriteKey), keyring.NewOpener(k.Private)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			h := k.NewHasher()
			for i := range 50 {
				plain := fmt.Appendf(nil, "goroutine %d object %d", g, i)
				env := s.Next()
				id := h.Sum(plain)
				ct := env.Seal(nil, id, plain, []byte("hdr"))
				got, err := o.Open(nil, env.Ephemeral(), id, env.Nonce(), ct, []byte("hdr"))
				if err != nil || !bytes.Equal(got, plain) {
					errs <- fmt.Errorf("goroutine %d object %d: %v", g, i, err)
					return
				}
				if i%10 == 0 {
					s.Rotate()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestChunkID(t *testing.T) {
	t.Parallel()
	k, other := newKeys(t), newKeys(t)
	data := []byte("the same bytes")
	id := k.ChunkID(data)
	if h := k.NewHasher(); h.Sum(data) != id || h.Sum(data) != id {
		t.Error("Hasher.Sum differs from ChunkID")
	}
	m := k.NewMAC()
	m.Write(data[:3])
	m.Write(data[3:])
	if !bytes.Equal(m.Sum(nil), id[:]) {
		t.Error("NewMAC differs from ChunkID")
	}
	if other.ChunkID(data) == id {
		t.Error("two repositories give the same chunk ID")
	}
	if k.ChunkID([]byte("other bytes")) == id {
		t.Error("two inputs give the same chunk ID")
	}
	if k.WithoutMeta().ChunkID(data) != id {
		t.Error("narrowed write keys compute other chunk IDs: dedup would break")
	}
}

func TestMeta(t *testing.T) {
	t.Parallel()
	k, other := newKeys(t), newKeys(t)
	aad := []byte("headers/abc")
	plain := []byte(`{"host":"db01"}`)
	box, err := k.SealMeta(nil, plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(box) != len(plain)+keyring.MetaOverhead {
		t.Errorf("sealed %d bytes, want %d", len(box), len(plain)+keyring.MetaOverhead)
	}
	if got, err := k.OpenMeta(nil, box, aad); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("OpenMeta = %q, %v", got, err)
	}
	for _, tt := range []struct {
		name string
		key  *keyring.WriteKey
		box  []byte
		aad  []byte
		want error
	}{
		{"other aad", &k.WriteKey, box, []byte("headers/abd"), keyring.ErrAuth},
		{"other repository", &other.WriteKey, box, aad, keyring.ErrAuth},
		{"short", &k.WriteKey, box[:keyring.MetaOverhead-1], aad, keyring.ErrAuth},
		{"no meta", k.WithoutMeta(), box, aad, keyring.ErrNoMeta},
	} {
		if _, err := tt.key.OpenMeta(nil, tt.box, tt.aad); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	for i := range box {
		m := bytes.Clone(box)
		m[i] ^= 1
		if _, err := k.OpenMeta(nil, m, aad); !errors.Is(err, keyring.ErrAuth) {
			t.Errorf("byte %d changed: err = %v, want ErrAuth", i, err)
		}
	}
	if _, err := k.WithoutMeta().SealMeta(nil, plain, aad); !errors.Is(err, keyring.ErrNoMeta) {
		t.Errorf("SealMeta without meta: err = %v, want ErrNoMeta", err)
	}
}

func TestStaging(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	compressor := k.WithoutMeta() // compressors read what readers staged
	plain := bytes.Repeat([]byte{7}, 5000)
	aad := []byte("staging/job-7/00000042")
	box, err := k.SealStaging(nil, "job-7", plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(box, plain[:64]) {
		t.Error("the staged object holds the raw bytes")
	}
	if got, err := compressor.OpenStaging(nil, "job-7", box, aad); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("OpenStaging: %v", err)
	}
	if _, err := compressor.OpenStaging(nil, "job-8", box, aad); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("other job: err = %v, want ErrAuth", err)
	}
	if _, err := compressor.OpenStaging(nil, "job-7", box, []byte("staging/job-7/00000043")); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("other name: err = %v, want ErrAuth", err)
	}
	if _, err := newKeys(t).OpenStaging(nil, "job-7", box, aad); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("other repository: err = %v, want ErrAuth", err)
	}
	if _, err := k.SealStaging(nil, "", plain, aad); err == nil {
		t.Error("SealStaging with an empty job succeeded")
	}
}

func TestWriteKeyFile(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	for _, wk := range []*keyring.WriteKey{&k.WriteKey, k.WithoutMeta()} {
		file, err := wk.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(file, []byte("bulkbackup-write-key v1\n")) || bytes.Count(file, []byte("\n")) != 2 {
			t.Errorf("file %q is not two lines with the header", file)
		}
		for _, f := range [][]byte{file, bytes.TrimSuffix(file, []byte("\n"))} {
			got, err := keyring.ParseWriteKey(f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Repository != wk.Repository || got.ID != wk.ID ||
				(got.Meta == nil) != (wk.Meta == nil) || (got.Meta != nil && *got.Meta != *wk.Meta) || !got.Public.Equal(wk.Public) {
				t.Errorf("round trip of %v gave %v", wk, got)
			}
		}
	}
}

func TestParseWriteKeyRefuses(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	b := func(v any) string {
		j, _ := json.Marshal(v)
		return "bulkbackup-write-key v1\n" + base64.StdEncoding.EncodeToString(j) + "\n"
	}
	id := base64.StdEncoding.EncodeToString(k.ID[:])
	pub := base64.StdEncoding.EncodeToString(k.Public.Bytes())
	good := map[string]any{"repository": "r", "id": id, "meta": id, "public": pub}
	with := func(key string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		return m
	}
	if _, err := keyring.ParseWriteKey([]byte(b(good))); err != nil {
		t.Fatalf("the good key: %v", err)
	}
	padded := b(with("repository", "rr"))
	if !strings.Contains(padded, "=") {
		padded = b(with("repository", "rrr"))
	}
	for _, tt := range []struct{ name, file string }{
		{"empty", ""},
		{"header only", "bulkbackup-write-key v1\n"},
		{"v2", strings.Replace(b(good), "v1", "v2", 1)},
		{"crlf", strings.ReplaceAll(b(good), "\n", "\r\n")},
		{"third line", b(good) + "x\n"},
		{"blank line after", b(good) + "\n"},
		{"not base64", "bulkbackup-write-key v1\n!!!!\n"},
		{"base64 of not JSON", "bulkbackup-write-key v1\n" + base64.StdEncoding.EncodeToString([]byte("nope")) + "\n"},
		{"unpadded base64", strings.TrimRight(padded, "=\n") + "\n"},
		{"unknown field", b(with("private", id))},
		{"no repository", b(with("repository", nil))},
		{"no id", b(with("id", nil))},
		{"short id", b(with("id", base64.StdEncoding.EncodeToString(k.ID[:31])))},
		{"no public", b(with("public", nil))},
		{"small-order public", b(with("public", base64.StdEncoding.EncodeToString(make([]byte, 32))))},
		{"host field", b(map[string]any{"repository": "r", "host": "h", "id": id, "public": pub})},
		{"two objects", "bulkbackup-write-key v1\n" + base64.StdEncoding.EncodeToString([]byte(`{"repository":"r","id":"`+id+`","public":"`+pub+`"}{}`)) + "\n"},
	} {
		_, err := keyring.ParseWriteKey([]byte(tt.file))
		if !errors.Is(err, keyring.ErrDamaged) {
			t.Errorf("%s: err = %v, want ErrDamaged", tt.name, err)
			continue
		}
		if strings.Contains(err.Error(), id) || strings.Contains(err.Error(), id[:20]) {
			t.Errorf("%s: the error quotes the secret: %v", tt.name, err)
		}
	}
}

func writeFile(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
	return path
}

func TestSecretFiles(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	file, _ := k.WriteKey.Marshal()
	if _, err := keyring.LoadWriteKeyFile(writeFile(t, "wk", file, 0o600)); err != nil {
		t.Errorf("mode 0600: %v", err)
	}
	if _, err := keyring.LoadWriteKeyFile(writeFile(t, "wk", file, 0o400)); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o602} {
		path := writeFile(t, "wk", file, mode)
		_, err := keyring.LoadWriteKeyFile(path)
		if !errors.Is(err, keyring.ErrInsecureFile) || !strings.Contains(err.Error(), path) {
			t.Errorf("mode %04o: err = %v, want ErrInsecureFile naming the file", mode, err)
		}
		if _, err := keyring.ReadPasswordFile(path); !errors.Is(err, keyring.ErrInsecureFile) {
			t.Errorf("password, mode %04o: err = %v, want ErrInsecureFile", mode, err)
		}
		if _, err := keyring.LoadIdentityFile(path); !errors.Is(err, keyring.ErrInsecureFile) {
			t.Errorf("identity, mode %04o: err = %v, want ErrInsecureFile", mode, err)
		}
	}
	if _, err := keyring.LoadWriteKeyFile(t.TempDir()); err == nil {
		t.Error("a directory was loaded as a write key")
	}
	if _, err := keyring.LoadWriteKeyFile(writeFile(t, "big", make([]byte, keyring.MaxSecretFileSize+1), 0o600)); err == nil {
		t.Error("an oversized file was loaded")
	}
	for in, want := range map[string]string{"pw\n": "pw", "pw\r\n": "pw", "pw": "pw", "pw\n\n": "pw\n", " pw ": " pw "} {
		got, err := keyring.ReadPasswordFile(writeFile(t, "pw", []byte(in), 0o600))
		if err != nil || string(got) != want {
			t.Errorf("ReadPasswordFile(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "\r\n"} {
		if _, err := keyring.ReadPasswordFile(writeFile(t, "pw", []byte(in), 0o600)); err == nil {
			t.Errorf("ReadPasswordFile(%q) accepted an empty password", in)
		}
	}
}

func password(t testing.TB, pw string) age.Identity {
	t.Helper()
	id, err := keyring.PasswordIdentity([]byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sameKeys(a, b *keyring.Keys) bool {
	return a.Repository == b.Repository && a.ID == b.ID && *a.Meta == *b.Meta &&
		a.Private.Equal(b.Private) && a.Public.Equal(b.Public)
}

func TestWrapPassword(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	info, obj, err := keyring.WrapPassword(k, []byte("hunter2"), "laptop", testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != keyring.KindPassword || info.Label != "laptop" || info.Repository != k.Repository || len(info.ID) != 32 {
		t.Errorf("info = %+v", info)
	}
	if parsed, err := keyring.ParseKeyInfo(obj); err != nil || parsed.ID != info.ID || !parsed.Created.Equal(info.Created) {
		t.Errorf("ParseKeyInfo = %+v, %v; want %+v", parsed, err, info)
	}
	for _, secret := range [][]byte{k.ID[:], k.Meta[:], k.Private.Bytes()} {
		for _, enc := range []string{hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
			if bytes.Contains(obj, []byte(enc)) {
				t.Fatal("the key object holds a secret in clear")
			}
		}
	}
	got, err := keyring.Unwrap(obj, password(t, "hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(got, k) {
		t.Error("unwrapped keys differ")
	}
	if err := got.CheckRepository(k.Repository); err != nil {
		t.Error(err)
	}
	if err := got.CheckRepository("another"); !errors.Is(err, keyring.ErrWrongRepository) {
		t.Errorf("CheckRepository: err = %v, want ErrWrongRepository", err)
	}
	x, _ := age.GenerateX25519Identity()
	for name, ids := range map[string][]age.Identity{
		"wrong password":     {password(t, "hunter3")},
		"two wrong":          {password(t, "a"), password(t, "b")},
		"an age identity":    {x},
		"no identities":      nil,
		"prefix of password": {password(t, "hunter")},
	} {
		if _, err := keyring.Unwrap(obj, ids...); !errors.Is(err, keyring.ErrNoKey) {
			t.Errorf("%s: err = %v, want ErrNoKey", name, err)
		}
	}
	if _, err := keyring.Unwrap(obj, x, password(t, "hunter2")); err != nil {
		t.Errorf("the password among other identities: %v", err)
	}
	for _, wf := range []int{-1, keyring.MaxWorkFactor + 1} {
		if _, _, err := keyring.WrapPassword(k, []byte("pw"), "", wf); err == nil {
			t.Errorf("work factor %d accepted", wf)
		}
	}
	if _, _, err := keyring.WrapPassword(k, nil, "", testWorkFactor); err == nil {
		t.Error("an empty password was accepted")
	}
}

func TestWrapRecipients(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	alice, _ := age.GenerateX25519Identity()
	bob, _ := age.GenerateX25519Identity()
	carol, _ := age.GenerateX25519Identity()
	rb, err := keyring.ParseRecipient(bob.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	info, obj, err := keyring.WrapRecipients(k, []age.Recipient{alice.Recipient(), rb}, "admins")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{alice.Recipient().String(), bob.Recipient().String()}; info.Kind != keyring.KindAge || fmt.Sprint(info.Recipients) != fmt.Sprint(want) {
		t.Errorf("info = %+v, want kind age, recipients %v", info, want)
	}
	for _, id := range []age.Identity{alice, bob} {
		got, err := keyring.Unwrap(obj, id)
		if err != nil || !sameKeys(got, k) {
			t.Errorf("Unwrap with %v: %v", id, err)
		}
	}
	if _, err := keyring.Unwrap(obj, carol, password(t, "x")); !errors.Is(err, keyring.ErrNoKey) {
		t.Errorf("other identity: err = %v, want ErrNoKey", err)
	}
	r, _ := age.NewScryptRecipient("pw")
	if _, _, err := keyring.WrapRecipients(k, []age.Recipient{r}, ""); err == nil {
		t.Error("a password recipient was accepted")
	}
	if _, _, err := keyring.WrapRecipients(k, nil, ""); err == nil {
		t.Error("no recipients was accepted")
	}
	if _, _, err := keyring.WrapRecipients(&keyring.Keys{WriteKey: *k.WithoutMeta(), Private: k.Private}, []age.Recipient{alice.Recipient()}, ""); err == nil {
		t.Error("keys without their metadata root were wrapped")
	}
}

func TestSSHRecipient(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " admin@host"
	r, err := keyring.ParseRecipient(line)
	if err != nil {
		t.Fatal(err)
	}
	info, obj, err := keyring.WrapRecipients(k, []age.Recipient{r}, "ssh")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Recipients) != 1 || info.Recipients[0] != line {
		t.Errorf("recipients = %q, want [%q]", info.Recipients, line)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := keyring.ParseIdentities(pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := keyring.Unwrap(obj, ids...); err != nil || !sameKeys(got, k) {
		t.Errorf("Unwrap with the SSH key: %v", err)
	}
	for _, bad := range []string{"", "age1nope", "ssh-dss AAAA", "-----BEGIN"} {
		if _, err := keyring.ParseRecipient(bad); err == nil {
			t.Errorf("ParseRecipient(%q) succeeded", bad)
		}
	}
}

func TestParseIdentities(t *testing.T) {
	t.Parallel()
	x, _ := age.GenerateX25519Identity()
	ids, err := keyring.ParseIdentities([]byte("# comment\n\n" + x.String() + "\n"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("ParseIdentities = %v, %v", ids, err)
	}
	path := writeFile(t, "id", []byte(x.String()+"\n"), 0o600)
	if ids, err := keyring.LoadIdentityFile(path); err != nil || len(ids) != 1 {
		t.Errorf("LoadIdentityFile = %v, %v", ids, err)
	}
	for _, bad := range []string{"", "AGE-SECRET-KEY-1XYZ", "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n"} {
		_, err := keyring.ParseIdentities([]byte(bad))
		if err == nil {
			t.Errorf("ParseIdentities(%q) succeeded", bad)
		} else if strings.Contains(bad, "XYZ") && strings.Contains(err.Error(), "XYZ") {
			t.Errorf("the error quotes the identity: %v", err)
		}
	}
}

// TestUnwrapDamaged changes key objects in ways a bucket writer could:
// each must be reported as damaged (or, for a password stanza, as a
// non-matching password), never return keys.
func TestUnwrapDamaged(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	x, _ := age.GenerateX25519Identity()
	_, obj, err := keyring.WrapRecipients(k, []age.Recipient{x.Recipient()}, "l")
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(obj, &j); err != nil {
		t.Fatal(err)
	}
	edit := func(key string, v any) []byte {
		m := map[string]any{}
		for k, v := range j {
			m[k] = v
		}
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		out, _ := json.Marshal(m)
		return out
	}
	data, _ := base64.StdEncoding.DecodeString(j["data"].(string))
	flip := func(i int) string {
		d := bytes.Clone(data)
		d[i] ^= 1
		return base64.StdEncoding.EncodeToString(d)
	}
	hdrEnd := bytes.Index(data, []byte("\n---")) // the age header's MAC line
	for _, tt := range []struct {
		name string
		obj  []byte
	}{
		{"not JSON", []byte("nope")},
		{"version 2", edit("version", 2)},
		{"other id", edit("id", strings.Repeat("0", 32))},
		{"bad id", edit("id", "../../x")},
		{"other repository", edit("repository", "another")},
		{"no repository", edit("repository", nil)},
		{"unknown kind", edit("kind", "rot13")},
		{"no data", edit("data", nil)},
		{"data not base64", edit("data", "!!")},
		{"data truncated", edit("data", base64.StdEncoding.EncodeToString(data[:len(data)-1]))},
		{"payload byte changed", edit("data", flip(len(data)-5))},
		{"header MAC changed", edit("data", flip(hdrEnd+6))},
		{"too large", append(bytes.Clone(obj), bytes.Repeat([]byte(" "), keyring.MaxKeyObjectSize)...)},
	} {
		got, err := keyring.Unwrap(tt.obj, x)
		if !errors.Is(err, keyring.ErrDamaged) || got != nil {
			t.Errorf("%s: err = %v, want ErrDamaged", tt.name, err)
		}
	}
	// Unknown fields of the plaintext metadata are informational.
	if _, err := keyring.Unwrap(edit("hostname", "admin-laptop"), x); err != nil {
		t.Errorf("an extra field: %v", err)
	}
	// So are the label and the creation time: changing them is not damage.
	if _, err := keyring.Unwrap(edit("label", "changed"), x); err != nil {
		t.Errorf("changed label: %v", err)
	}
}

// TestUnwrapWorkFactorBound plants a password object whose scrypt work
// factor is above MaxWorkFactor: Unwrap refuses it before spending the
// memory.
func TestUnwrapWorkFactorBound(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	_, obj, err := keyring.WrapPassword(k, []byte("pw"), "", testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	json.Unmarshal(obj, &j)
	// age computes scrypt when wrapping too: keep the test fast by
	// replacing the work factor in an object wrapped at a low one.
	data, _ := base64.StdEncoding.DecodeString(j["data"].(string))
	low := fmt.Sprintf(" %d\n", testWorkFactor)
	high := fmt.Sprintf(" %d\n", keyring.MaxWorkFactor+1)
	if !bytes.Contains(data, []byte(low)) {
		t.Fatalf("no work factor %q in the age header %q", low, data[:80])
	}
	j["data"] = base64.StdEncoding.EncodeToString(bytes.Replace(data, []byte(low), []byte(high), 1))
	planted, _ := json.Marshal(j)
	_, err = keyring.Unwrap(planted, password(t, "pw"))
	if !errors.Is(err, keyring.ErrDamaged) || !strings.Contains(err.Error(), "work factor") {
		t.Errorf("err = %v, want ErrDamaged about the work factor", err)
	}
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	hk := k.WithoutMeta()
	var logs bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	l.Info("loaded", "keys", k, "write_key", &k.WriteKey, "host_key", hk, "value", *k)
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v %x %q", k, *k, k, k.WriteKey, &k.WriteKey, hk, *hk, k, hk) + logs.String()
	for name, secret := range map[string][]byte{"id": k.ID[:], "meta": k.Meta[:], "private": k.Private.Bytes()} {
		for _, enc := range []string{hex.EncodeToString(secret)[:16], base64.StdEncoding.EncodeToString(secret)[:16], fmt.Sprint(secret[:8])[1:20]} {
			if strings.Contains(out, enc) {
				t.Errorf("the %s key shows in %q", name, out)
			}
		}
	}
	if !strings.Contains(out, k.Repository) {
		t.Errorf("the repository ID does not show in %q", out)
	}
	for _, v := range []any{k, *k, &k.WriteKey, struct{ K *keyring.WriteKey }{hk}} {
		if b, err := json.Marshal(v); err == nil {
			t.Errorf("json.Marshal(%T) = %s, want an error", v, b)
		}
	}
}

func TestGrant(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s, o := newSealer(t, &k.WriteKey), keyring.NewOpener(k.Private)
	var objs []sealed
	for i := range 6 {
		if i == 3 {
			s.Rotate() // the snapshot's chunks lie in two sessions
		}
		objs = append(objs, seal(t, s, &k.WriteKey, fmt.Appendf(nil, "chunk %d", i)))
	}
	snapshot, other := objs[:4], objs[4:] // other: same session as objs[3], another snapshot's
	host, _ := keyring.LoadOrCreateHostIdentity(filepath.Join(t.TempDir(), "host.key"))
	expires := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := keyring.NewGrant(k.Repository, "restore-1", "snap", expires)
	for _, obj := range snapshot {
		if err := g.Add(o, obj.ephemeral, obj.id); err != nil {
			t.Fatal(err)
		}
	}
	data, err := keyring.WrapForJob(g, host.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	now := expires.Add(-time.Hour)
	got, err := keyring.UnwrapForJob(data, k.Repository, "restore-1", now, host)
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != len(snapshot) || got.Snapshot != "snap" || !got.Expires.Equal(expires) {
		t.Errorf("unwrapped grant: %d objects, snapshot %q, expires %v", got.Len(), got.Snapshot, got.Expires)
	}
	for i, obj := range snapshot {
		if plain, err := obj.open(got); err != nil || string(plain) != fmt.Sprintf("chunk %d", i) {
			t.Errorf("object %d: %q, %v", i, plain, err)
		}
	}
	for i, obj := range other {
		if _, err := obj.open(got); !errors.Is(err, keyring.ErrWrongJob) {
			t.Errorf("object %d of another snapshot: err = %v, want ErrWrongJob", i, err)
		}
	}
	// One object's key does not open another object, even of its session:
	// give object 3's key to object 4's ID and see it fail.
	forged := other[0]
	forged.id = snapshot[3].id
	if _, err := forged.open(got); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("object 4 under object 3's key: err = %v, want ErrAuth", err)
	}
	tampered := snapshot[0]
	tampered.payload = bytes.Clone(tampered.payload)
	tampered.payload[0] ^= 1
	if _, err := tampered.open(got); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("tampered object: err = %v, want ErrAuth", err)
	}

	stranger, _ := age.GenerateX25519Identity()
	for _, tt := range []struct {
		name       string
		data       []byte
		repo, job  string
		now        time.Time
		ids        []age.Identity
		wantErr    error
		wantInText string
	}{
		{"other job", data, k.Repository, "restore-2", now, []age.Identity{host}, keyring.ErrWrongJob, "restore-1"},
		{"other repository", data, "another", "restore-1", now, []age.Identity{host}, keyring.ErrWrongRepository, ""},
		{"at expiry", data, k.Repository, "restore-1", expires, []age.Identity{host}, keyring.ErrExpired, ""},
		{"after expiry", data, k.Repository, "restore-1", expires.Add(time.Hour), []age.Identity{host}, keyring.ErrExpired, ""},
		{"other host", data, k.Repository, "restore-1", now, []age.Identity{stranger}, keyring.ErrNoKey, ""},
		{"truncated", data[:len(data)-1], k.Repository, "restore-1", now, []age.Identity{host}, keyring.ErrDamaged, ""},
		{"garbage", []byte("age-encryption.org/v1\n-> X25519 nope\n"), k.Repository, "restore-1", now, []age.Identity{host}, keyring.ErrDamaged, ""},
	} {
		g, err := keyring.UnwrapForJob(tt.data, tt.repo, tt.job, tt.now, tt.ids...)
		if !errors.Is(err, tt.wantErr) || g != nil || !strings.Contains(fmt.Sprint(err), tt.wantInText) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if _, err := keyring.WrapForJob(keyring.NewGrant(k.Repository, "j", "", time.Time{}), host.Recipient()); err == nil {
		t.Error("a grant without expiry was wrapped")
	}
}

func TestGrantMalformedPayload(t *testing.T) {
	t.Parallel()
	host, _ := age.GenerateX25519Identity()
	wrap := func(payload string) []byte {
		var buf bytes.Buffer
		w, _ := age.Encrypt(&buf, host.Recipient())
		w.Write([]byte(payload))
		w.Close()
		return buf.Bytes()
	}
	eph := base64.StdEncoding.EncodeToString(make([]byte, 32))
	rec := base64.StdEncoding.EncodeToString(make([]byte, 64))
	const head = `{"version":1,"repository":"r","job":"j","expires":"2030-01-01T00:00:00Z"`
	if _, err := keyring.UnwrapForJob(wrap(head+`,"sessions":[{"ephemeral":"`+eph+`","objects":"`+rec+`"}]}`), "r", "j", time.Time{}, host); err != nil {
		t.Fatalf("the well-formed grant: %v", err)
	}
	for name, payload := range map[string]string{
		"not JSON":        "nope",
		"version 2":       `{"version":2,"repository":"r","job":"j","expires":"2030-01-01T00:00:00Z","sessions":[]}`,
		"no expiry":       `{"version":1,"repository":"r","job":"j","sessions":[]}`,
		"unknown field":   head + `,"sessions":[],"private":"x"}`,
		"short ephemeral": head + `,"sessions":[{"ephemeral":"AAAA","objects":""}]}`,
		"partial record":  head + `,"sessions":[{"ephemeral":"` + eph + `","objects":"` + base64.StdEncoding.EncodeToString(make([]byte, 63)) + `"}]}`,
		"duplicate":       head + `,"sessions":[{"ephemeral":"` + eph + `","objects":"` + base64.StdEncoding.EncodeToString(make([]byte, 128)) + `"}]}`,
		"trailing data":   head + `,"sessions":[]} {}`,
	} {
		if _, err := keyring.UnwrapForJob(wrap(payload), "r", "j", time.Time{}, host); !errors.Is(err, keyring.ErrDamaged) {
			t.Errorf("%s: err = %v, want ErrDamaged", name, err)
		}
	}
}

func TestHostIdentity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "host.key")
	a, err := keyring.LoadOrCreateHostIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	b, err := keyring.LoadOrCreateHostIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("the second call made another identity")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the identity", len(entries))
	}
	content, _ := os.ReadFile(path)
	if !strings.Contains(string(content), a.Recipient().String()) {
		t.Error("the file does not name its public key")
	}
	os.Chmod(path, 0o644)
	if _, err := keyring.LoadOrCreateHostIdentity(path); !errors.Is(err, keyring.ErrInsecureFile) {
		t.Errorf("mode 0644: err = %v, want ErrInsecureFile", err)
	}
	if _, err := keyring.LoadOrCreateHostIdentity(writeFile(t, "bad", []byte("# nothing\n"), 0o600)); err == nil {
		t.Error("a file without an identity was accepted")
	}
	if _, err := keyring.LoadOrCreateHostIdentity(filepath.Join(dir, "missing", "host.key")); err == nil {
		t.Error("an identity was created in a missing directory")
	}
}

// TestHostIdentityRace has several goroutines create the same host
// identity: all must end with the one that was written.
func TestHostIdentityRace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "host.key")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			id, err := keyring.LoadOrCreateHostIdentity(path)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = id.String()
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("goroutines got different identities")
		}
	}
}
