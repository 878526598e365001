package keyring

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
)

func TestSessionLimit(t *testing.T) {
	t.Parallel()
	k, err := GenerateKeys("r")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	if s.limit != MaxSessionObjects {
		t.Fatalf("limit %d, want MaxSessionObjects", s.limit)
	}
	s.limit = 3
	seen := map[[EphemeralSize]byte]int{}
	for range 9 {
		seen[s.Next().Ephemeral()]++
	}
	if len(seen) != 3 {
		t.Errorf("9 objects at 3 per session used %d sessions, want 3", len(seen))
	}
	for eph, n := range seen {
		if n != 3 {
			t.Errorf("session %x sealed %d objects, want 3", eph[:4], n)
		}
	}
}

func TestOpenerCacheBounded(t *testing.T) {
	t.Parallel()
	k, err := GenerateKeys("r")
	if err != nil {
		t.Fatal(err)
	}
	o := NewOpener(k.Private)
	id := k.ChunkID([]byte("x"))
	var first [EphemeralSize]byte
	for i := range openCacheSize + 10 {
		eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
		s, err := newSession(eph, k.Public)
		if err != nil {
			t.Fatal(err)
		}
		var nonce [NonceSize]byte
		ct := objectAEAD(objectKey(&s.key, id)).Seal(nil, nonce[:], []byte("x"), nil)
		if _, err := o.Open(nil, s.ephemeral, id, nonce, ct, nil); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = s.ephemeral
		}
	}
	if o.lru.Len() != openCacheSize || len(o.index) != openCacheSize {
		t.Errorf("cache holds %d/%d sessions, want %d", o.lru.Len(), len(o.index), openCacheSize)
	}
	if _, ok := o.index[first]; ok {
		t.Error("the least recently used session was not evicted")
	}
	// Objects that fail to open do not enter the cache.
	o2 := NewOpener(k.Private)
	for range 5 {
		eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
		var e [EphemeralSize]byte
		copy(e[:], eph.PublicKey().Bytes())
		if _, err := o2.Open(nil, e, id, [NonceSize]byte{}, make([]byte, 40), nil); !errors.Is(err, ErrAuth) {
			t.Fatalf("garbage: err = %v, want ErrAuth", err)
		}
	}
	if o2.lru.Len() != 0 {
		t.Errorf("garbage put %d sessions in the cache", o2.lru.Len())
	}
}
