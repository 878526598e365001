package keyring

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
)

// readVector reads a known-answer vector as a seed for a fuzz target.
func readVector(f *testing.F, name string, v any) {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		f.Fatal(err)
	}
}

// FuzzOpen feeds the content object decoder arbitrary parameters: it must
// never panic, and fail only with ErrAuth.
func FuzzOpen(f *testing.F) {
	var v objectVector
	readVector(f, "object.json", &v)
	f.Add([]byte(v.EphemeralPublic), []byte(v.ID), []byte(v.Nonce), []byte(v.Sealed), []byte(v.AAD))
	f.Add(make([]byte, 32), make([]byte, 32), make([]byte, 12), []byte{}, []byte{})
	priv, err := ecdh.X25519().NewPrivateKey(v.RepositoryPrivate)
	if err != nil {
		f.Fatal(err)
	}
	o := NewOpener(priv)
	f.Fuzz(func(t *testing.T, eph, id, nonce, sealed, aad []byte) {
		if len(eph) != EphemeralSize || len(id) != KeySize || len(nonce) != NonceSize {
			return
		}
		got, err := o.Open(nil, [EphemeralSize]byte(eph), [KeySize]byte(id), [NonceSize]byte(nonce), sealed, aad)
		if err != nil {
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("err = %v, want ErrAuth", err)
			}
			return
		}
		if len(got) != len(sealed)-Overhead {
			t.Fatalf("opened %d bytes from %d", len(got), len(sealed))
		}
	})
}

// FuzzOpenMeta: the metadata decoder never panics and fails with ErrAuth.
func FuzzOpenMeta(f *testing.F) {
	var v metaVector
	readVector(f, "meta.json", &v)
	f.Add([]byte(v.Sealed), []byte(v.AAD))
	f.Add([]byte{}, []byte{})
	root := [KeySize]byte(v.MetaRoot)
	k := &WriteKey{Repository: "r", Meta: &root}
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		got, err := k.OpenMeta(nil, sealed, aad)
		if err != nil {
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("err = %v, want ErrAuth", err)
			}
			return
		}
		if len(got) != len(sealed)-MetaOverhead {
			t.Fatalf("opened %d bytes from %d", len(got), len(sealed))
		}
	})
}

// FuzzUnwrap feeds Unwrap arbitrary key objects, with the vectors'
// password (at a low work factor bound, so that fuzzing stays fast) and
// identity: it never panics, fails with ErrNoKey or ErrDamaged, and what it
// returns is whole.
func FuzzUnwrap(f *testing.F) {
	var v keyObjectVector
	readVector(f, "keyobject.json", &v)
	f.Add([]byte(v.Password1))
	f.Add([]byte(v.AgeObject))
	f.Add([]byte(`{"version":1,"id":"00000000000000000000000000000000","repository":"r","kind":"age","data":"AA=="}`))
	pw, err := passwordIdentity([]byte(v.Password), v.WorkFactor)
	if err != nil {
		f.Fatal(err)
	}
	id, err := age.ParseX25519Identity(v.Identity)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		k, err := Unwrap(obj, pw, id)
		if err != nil {
			if !errors.Is(err, ErrNoKey) && !errors.Is(err, ErrDamaged) {
				t.Fatalf("err = %v, want ErrNoKey or ErrDamaged", err)
			}
			return
		}
		if err := k.validate(); err != nil {
			t.Fatalf("Unwrap returned invalid keys: %v", err)
		}
	})
}

// FuzzParseWriteKey: what parses marshals back to a file that parses to
// the same key.
func FuzzParseWriteKey(f *testing.F) {
	var v writeKeyVector
	readVector(f, "writekey.json", &v)
	for _, s := range []string{v.Fleet, v.NoMeta, "bulkbackup-write-key v1\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseWriteKey(data)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("err = %v, want ErrDamaged", err)
			}
			return
		}
		out, err := k.Marshal()
		if err != nil {
			t.Fatalf("a parsed key does not marshal: %v", err)
		}
		again, err := ParseWriteKey(out)
		if err != nil {
			t.Fatalf("the marshalled key does not parse: %v", err)
		}
		if !sameWriteKey(k, again) {
			t.Fatal("the round trip changed the key")
		}
	})
}

// FuzzUnwrapForJob feeds UnwrapForJob arbitrary data: it never panics and
// fails with one of its documented errors.
func FuzzUnwrapForJob(f *testing.F) {
	var v grantVector
	readVector(f, "grant.json", &v)
	f.Add([]byte(v.Data))
	f.Add([]byte("age-encryption.org/v1\n"))
	id, err := age.ParseX25519Identity(v.Identity)
	if err != nil {
		f.Fatal(err)
	}
	now := v.Expires.Add(-time.Hour)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := UnwrapForJob(data, v.Repository, v.Job, now, id)
		if err != nil {
			for _, want := range []error{ErrNoKey, ErrDamaged, ErrWrongRepository, ErrWrongJob, ErrExpired} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("undocumented error %v", err)
		}
		if g.Repository != v.Repository || g.Job != v.Job {
			t.Fatalf("grant for %q/%q accepted", g.Repository, g.Job)
		}
	})
}
