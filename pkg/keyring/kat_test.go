package keyring

// Known-answer tests: the vectors in testdata/ fix every derivation and
// cipher of docs/encryption.md. `go test -run KAT -update ./pkg/keyring/`
// rewrites them from the fixed inputs below; the age-based vectors (key
// objects, grants) get new random bytes then, and are checked by opening.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
)

var update = flag.Bool("update", false, "rewrite the known-answer vectors in testdata/")

// fixed returns 32 reproducible bytes for a known-answer input.
func fixed(label string) []byte {
	s := sha256.Sum256([]byte("bulkbackup kat " + label))
	return s[:]
}

// hexBytes is a byte string written as hex in the vectors.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// vector reads testdata/name into v, or, with -update, writes v there
// after make has filled it.
func vector(t *testing.T, name string, v any, make func()) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		make()
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkHex(t *testing.T, what string, got []byte, want hexBytes) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, want %x", what, got, []byte(want))
	}
}

// katKeys are the fixed keys of the vectors.
func katKeys(t *testing.T) *Keys {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(fixed("repository private"))
	if err != nil {
		t.Fatal(err)
	}
	k := &Keys{WriteKey: WriteKey{Repository: "5c1f0a2e-kat0-4e6b-9d1a-000000000001", Meta: new([KeySize]byte)}, Private: priv}
	k.ID = [KeySize]byte(fixed("id root"))
	*k.Meta = [KeySize]byte(fixed("meta root"))
	k.Public = priv.PublicKey()
	return k
}

type objectVector struct {
	Comment           string   `json:"comment"`
	RepositoryPrivate hexBytes `json:"repository_private"`
	RepositoryPublic  hexBytes `json:"repository_public"`
	EphemeralPrivate  hexBytes `json:"ephemeral_private"`
	EphemeralPublic   hexBytes `json:"ephemeral_public"`
	Shared            hexBytes `json:"shared"`
	SessionKey        hexBytes `json:"session_key"`
	ID                hexBytes `json:"id"`
	ObjectKey         hexBytes `json:"object_key"`
	Nonce             hexBytes `json:"nonce"`
	AAD               hexBytes `json:"aad"`
	Plaintext         hexBytes `json:"plaintext"`
	Sealed            hexBytes `json:"sealed"`
}

func TestKATObject(t *testing.T) {
	var v objectVector
	vector(t, "object.json", &v, func() {
		v = objectVector{
			Comment:           "content object cipher, docs/encryption.md section 4; sealed = ciphertext || tag",
			RepositoryPrivate: katKeys(t).Private.Bytes(),
			EphemeralPrivate:  fixed("ephemeral private"),
			ID:                fixed("object id"),
			Nonce:             fixed("nonce")[:NonceSize],
			AAD:               []byte("BKCH header bytes as pkg/chunk lays them out"),
			Plaintext:         []byte("hello, bulkbackup\n"),
		}
		priv, _ := ecdh.X25519().NewPrivateKey(v.RepositoryPrivate)
		eph, _ := ecdh.X25519().NewPrivateKey(v.EphemeralPrivate)
		shared, _ := eph.ECDH(priv.PublicKey())
		sk := sessionKey(shared, eph.PublicKey().Bytes(), priv.PublicKey().Bytes())
		ok := objectKey(&sk, [KeySize]byte(v.ID))
		s, err := newSealerWith(priv.PublicKey(), eph)
		if err != nil {
			t.Fatal(err)
		}
		v.RepositoryPublic, v.EphemeralPublic, v.Shared = priv.PublicKey().Bytes(), eph.PublicKey().Bytes(), shared
		v.SessionKey, v.ObjectKey = sk[:], ok[:]
		v.Sealed = s.next([NonceSize]byte(v.Nonce)).Seal(nil, [KeySize]byte(v.ID), v.Plaintext, v.AAD)
	})

	priv, err := ecdh.X25519().NewPrivateKey(v.RepositoryPrivate)
	if err != nil {
		t.Fatal(err)
	}
	eph, err := ecdh.X25519().NewPrivateKey(v.EphemeralPrivate)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "repository public", priv.PublicKey().Bytes(), v.RepositoryPublic)
	checkHex(t, "ephemeral public", eph.PublicKey().Bytes(), v.EphemeralPublic)
	shared, err := eph.ECDH(priv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "shared", shared, v.Shared)
	sk := sessionKey(shared, eph.PublicKey().Bytes(), priv.PublicKey().Bytes())
	checkHex(t, "session key", sk[:], v.SessionKey)
	ok := objectKey(&sk, [KeySize]byte(v.ID))
	checkHex(t, "object key", ok[:], v.ObjectKey)

	s, err := newSealerWith(priv.PublicKey(), eph)
	if err != nil {
		t.Fatal(err)
	}
	env := s.next([NonceSize]byte(v.Nonce))
	ephPub := env.Ephemeral()
	checkHex(t, "envelope ephemeral", ephPub[:], v.EphemeralPublic)
	checkHex(t, "sealed", env.Seal(nil, [KeySize]byte(v.ID), v.Plaintext, v.AAD), v.Sealed)

	o := NewOpener(priv)
	got, err := o.Open(nil, [EphemeralSize]byte(v.EphemeralPublic), [KeySize]byte(v.ID), [NonceSize]byte(v.Nonce), v.Sealed, v.AAD)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "opened", got, v.Plaintext)
	gotKey, err := o.ObjectKey([EphemeralSize]byte(v.EphemeralPublic), [KeySize]byte(v.ID))
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "Opener.ObjectKey", gotKey[:], v.ObjectKey)
}

type chunkIDVector struct {
	Comment string   `json:"comment"`
	IDRoot  hexBytes `json:"id_root"`
	MACKey  hexBytes `json:"mac_key"`
	Cases   []struct {
		Input   hexBytes `json:"input"`
		ChunkID hexBytes `json:"chunk_id"`
	} `json:"cases"`
}

func TestKATChunkID(t *testing.T) {
	var v chunkIDVector
	vector(t, "chunkid.json", &v, func() {
		k := katKeys(t)
		v.Comment = "chunk ID = HMAC-SHA256(mac_key, input), mac_key = HKDF-Expand-SHA256(id_root, \"bulkbackup chunk id v1\", 32); docs/encryption.md section 3"
		v.IDRoot = k.ID[:]
		mk := derive(k.ID[:], labelChunkID, "")
		v.MACKey = mk[:]
		for _, in := range [][]byte{{}, []byte("hello, bulkbackup\n"), bytes.Repeat([]byte("bulk"), 64)} {
			id := k.ChunkID(in)
			v.Cases = append(v.Cases, struct {
				Input   hexBytes `json:"input"`
				ChunkID hexBytes `json:"chunk_id"`
			}{in, id[:]})
		}
	})
	k := &WriteKey{ID: [KeySize]byte(v.IDRoot)}
	mk := derive(k.ID[:], labelChunkID, "")
	checkHex(t, "mac key", mk[:], v.MACKey)
	if len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	h := k.NewHasher()
	for _, c := range v.Cases {
		got := k.ChunkID(c.Input)
		checkHex(t, "ChunkID", got[:], c.ChunkID)
		got = h.Sum(c.Input)
		checkHex(t, "Hasher.Sum", got[:], c.ChunkID)
	}
}

type metaVector struct {
	Comment   string   `json:"comment"`
	MetaRoot  hexBytes `json:"meta_root"`
	MetaKey   hexBytes `json:"meta_key"`
	Nonce     hexBytes `json:"nonce"`
	AAD       hexBytes `json:"aad"`
	Plaintext hexBytes `json:"plaintext"`
	Sealed    hexBytes `json:"sealed"`
}

func TestKATMeta(t *testing.T) {
	var v metaVector
	vector(t, "meta.json", &v, func() {
		k := katKeys(t)
		v.Comment = "metadata cipher, docs/encryption.md section 5; sealed = nonce || ciphertext || tag"
		v.MetaRoot = k.Meta[:]
		mk := derive(k.Meta[:], labelMeta, "")
		v.MetaKey = mk[:]
		v.Nonce = fixed("meta nonce")[:24]
		v.AAD = []byte("headers/3f2a9c0d5e6b47a8b1c2d3e4f5061728")
		v.Plaintext = []byte(`{"version":1,"id":"3f2a9c0d5e6b47a8b1c2d3e4f5061728","host":"db01"}`)
		v.Sealed, _ = k.sealMeta(nil, [24]byte(v.Nonce), v.Plaintext, v.AAD)
	})
	root := [KeySize]byte(v.MetaRoot)
	k := &WriteKey{Repository: "r", Meta: &root}
	mk := derive(root[:], labelMeta, "")
	checkHex(t, "meta key", mk[:], v.MetaKey)
	sealed, err := k.sealMeta(nil, [24]byte(v.Nonce), v.Plaintext, v.AAD)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "sealed", sealed, v.Sealed)
	got, err := k.OpenMeta(nil, v.Sealed, v.AAD)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "opened", got, v.Plaintext)
}

type stagingVector struct {
	Comment    string   `json:"comment"`
	IDRoot     hexBytes `json:"id_root"`
	Job        string   `json:"job"`
	StagingKey hexBytes `json:"staging_key"`
	Nonce      hexBytes `json:"nonce"`
	AAD        hexBytes `json:"aad"`
	Plaintext  hexBytes `json:"plaintext"`
	Sealed     hexBytes `json:"sealed"`
}

func TestKATStaging(t *testing.T) {
	var v stagingVector
	vector(t, "staging.json", &v, func() {
		k := katKeys(t)
		v.Comment = "staging cipher, docs/encryption.md section 3.1; sealed = nonce || ciphertext || tag"
		v.IDRoot, v.Job = k.ID[:], "nightly-db01-20250102"
		sk := derive(k.ID[:], labelStaging, v.Job)
		v.StagingKey = sk[:]
		v.Nonce = fixed("staging nonce")[:NonceSize]
		v.AAD = []byte("staging/nightly-db01-20250102/00000042")
		v.Plaintext = []byte("raw chunk bytes")
		aead, _ := k.stagingAEAD(v.Job)
		v.Sealed = sealStaging(nil, aead, [NonceSize]byte(v.Nonce), v.Plaintext, v.AAD)
	})
	k := &WriteKey{ID: [KeySize]byte(v.IDRoot)}
	sk := derive(k.ID[:], labelStaging, v.Job)
	checkHex(t, "staging key", sk[:], v.StagingKey)
	aead, err := k.stagingAEAD(v.Job)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "sealed", sealStaging(nil, aead, [NonceSize]byte(v.Nonce), v.Plaintext, v.AAD), v.Sealed)
	got, err := k.OpenStaging(nil, v.Job, v.Sealed, v.AAD)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "opened", got, v.Plaintext)
}

type keysVector struct {
	Repository string   `json:"repository"`
	ID         hexBytes `json:"id_root"`
	Meta       hexBytes `json:"meta_root"`
	Private    hexBytes `json:"private"`
	Public     hexBytes `json:"public"`
}

func keysOf(k *Keys) keysVector {
	return keysVector{k.Repository, k.ID[:], k.Meta[:], k.Private.Bytes(), k.Public.Bytes()}
}

func checkKeys(t *testing.T, got *Keys, want keysVector) {
	t.Helper()
	if got.Repository != want.Repository {
		t.Errorf("repository = %q, want %q", got.Repository, want.Repository)
	}
	checkHex(t, "id root", got.ID[:], want.ID)
	checkHex(t, "meta root", got.Meta[:], want.Meta)
	checkHex(t, "private", got.Private.Bytes(), want.Private)
	checkHex(t, "public", got.Public.Bytes(), want.Public)
}

type keyObjectVector struct {
	Comment    string     `json:"comment"`
	Keys       keysVector `json:"keys"`
	Password   string     `json:"password"`
	WorkFactor int        `json:"work_factor"`
	Password1  string     `json:"password_object"`
	Identity   string     `json:"identity"`
	AgeObject  string     `json:"age_object"`
}

func TestKATKeyObject(t *testing.T) {
	var v keyObjectVector
	vector(t, "keyobject.json", &v, func() {
		k := katKeys(t)
		v.Comment = "key objects, docs/encryption.md section 7: password_object opens with password, age_object with identity, both to keys"
		v.Keys = keysOf(k)
		v.Password, v.WorkFactor = "correct horse battery staple", 10
		_, obj, err := WrapPassword(k, []byte(v.Password), "kat password", v.WorkFactor)
		if err != nil {
			t.Fatal(err)
		}
		v.Password1 = string(obj)
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		v.Identity = id.String()
		_, obj, err = WrapRecipients(k, []age.Recipient{id.Recipient()}, "kat age")
		if err != nil {
			t.Fatal(err)
		}
		v.AgeObject = string(obj)
	})

	pw, err := passwordIdentity([]byte(v.Password), v.WorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unwrap([]byte(v.Password1), pw)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, got, v.Keys)
	wrong, _ := passwordIdentity([]byte(v.Password+"!"), v.WorkFactor)
	if _, err := Unwrap([]byte(v.Password1), wrong); !errors.Is(err, ErrNoKey) {
		t.Errorf("wrong password: err = %v, want ErrNoKey", err)
	}

	id, err := age.ParseX25519Identity(v.Identity)
	if err != nil {
		t.Fatal(err)
	}
	got, err = Unwrap([]byte(v.AgeObject), id)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, got, v.Keys)
	info, err := ParseKeyInfo([]byte(v.AgeObject))
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindAge || len(info.Recipients) != 1 || info.Recipients[0] != id.Recipient().String() {
		t.Errorf("info = %+v, want kind age, recipient %s", info, id.Recipient())
	}
}

type writeKeyVector struct {
	Comment string     `json:"comment"`
	Keys    keysVector `json:"keys"`
	Fleet   string     `json:"fleet"`
	NoMeta  string     `json:"no_meta_file"`
}

func TestKATWriteKey(t *testing.T) {
	var v writeKeyVector
	k := katKeys(t)
	marshal := func(wk *WriteKey) string {
		b, err := wk.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	vector(t, "writekey.json", &v, func() {
		v.Comment = "write key files, docs/encryption.md section 6"
		v.Keys = keysOf(k)
		v.Fleet, v.NoMeta = marshal(&k.WriteKey), marshal(k.WithoutMeta())
	})
	checkKeys(t, k, v.Keys) // the vectors were made from katKeys
	for _, tt := range []struct {
		name, file string
		want       *WriteKey
	}{
		{"fleet", v.Fleet, &k.WriteKey},
		{"no meta", v.NoMeta, k.WithoutMeta()},
	} {
		if got := marshal(tt.want); got != tt.file {
			t.Errorf("%s: Marshal = %q, want %q", tt.name, got, tt.file)
		}
		got, err := ParseWriteKey([]byte(tt.file))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !sameWriteKey(got, tt.want) {
			t.Errorf("%s: parsed %v differs", tt.name, got)
		}
	}
}

func sameWriteKey(a, b *WriteKey) bool {
	return a.Repository == b.Repository && a.ID == b.ID &&
		(a.Meta == nil) == (b.Meta == nil) && (a.Meta == nil || *a.Meta == *b.Meta) && a.Public.Equal(b.Public)
}

type grantVector struct {
	Comment    string    `json:"comment"`
	Identity   string    `json:"identity"`
	Repository string    `json:"repository"`
	Job        string    `json:"job"`
	Expires    time.Time `json:"expires"`
	Data       hexBytes  `json:"data"`
}

func TestKATGrant(t *testing.T) {
	var obj objectVector // written first by TestKATObject under -update
	if data, err := os.ReadFile(filepath.Join("testdata", "object.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	var v grantVector
	vector(t, "grant.json", &v, func() {
		k := katKeys(t)
		v.Comment = "a grant (docs/encryption.md section 8) for the object of object.json, wrapped to identity"
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		v.Identity, v.Repository, v.Job = id.String(), k.Repository, "restore-db01-1"
		v.Expires = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		g := NewGrant(v.Repository, v.Job, "3f2a9c0d5e6b47a8b1c2d3e4f5061728", v.Expires)
		if err := g.Add(NewOpener(k.Private), [EphemeralSize]byte(obj.EphemeralPublic), [KeySize]byte(obj.ID)); err != nil {
			t.Fatal(err)
		}
		if v.Data, err = WrapForJob(g, id.Recipient()); err != nil {
			t.Fatal(err)
		}
	})
	id, err := age.ParseX25519Identity(v.Identity)
	if err != nil {
		t.Fatal(err)
	}
	g, err := UnwrapForJob(v.Data, v.Repository, v.Job, v.Expires.Add(-time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Open(nil, [EphemeralSize]byte(obj.EphemeralPublic), [KeySize]byte(obj.ID), [NonceSize]byte(obj.Nonce), obj.Sealed, obj.AAD)
	if err != nil {
		t.Fatal(err)
	}
	checkHex(t, "opened with the grant", got, obj.Plaintext)
	if _, err := UnwrapForJob(v.Data, v.Repository, v.Job, v.Expires, id); !errors.Is(err, ErrExpired) {
		t.Errorf("at expiry: err = %v, want ErrExpired", err)
	}
}
