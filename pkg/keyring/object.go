package keyring

import (
	"container/list"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
)

// Sizes of the content cipher's parameters.
const (
	// NonceSize is the size of an AES-GCM nonce.
	NonceSize = 12
	// Overhead is the size of the AES-GCM tag after the ciphertext.
	Overhead = 16
	// EphemeralSize is the size of a session's ephemeral public key.
	EphemeralSize = 32
)

// MaxSessionObjects is how many objects a Sealer seals in one session before
// it starts another. With a key per object, nonces are no reason to rotate;
// rotation bounds what one session key, held in a writer's memory, covers.
const MaxSessionObjects = 1 << 24

// session is one writer session: its ephemeral public key and the session
// key derived from it.
type session struct {
	ephemeral [EphemeralSize]byte
	key       [KeySize]byte
}

// newSession derives a session from an ephemeral private key and the
// repository's public key (docs/encryption.md, section 4).
func newSession(eph *ecdh.PrivateKey, pub *ecdh.PublicKey) (*session, error) {
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, err
	}
	s := &session{ephemeral: [EphemeralSize]byte(eph.PublicKey().Bytes())}
	s.key = sessionKey(shared, s.ephemeral[:], pub.Bytes())
	return s, nil
}

// sessionKey is HKDF-SHA256(shared, salt = ephemeral || public,
// info = "bulkbackup session v1"), 32 bytes.
func sessionKey(shared, ephemeral, public []byte) [KeySize]byte {
	salt := make([]byte, 0, 2*EphemeralSize)
	salt = append(append(salt, ephemeral...), public...)
	k, err := hkdf.Key(sha256.New, shared, salt, labelSession, KeySize)
	if err != nil {
		panic(fmt.Sprintf("keyring: hkdf of %d bytes: %v", KeySize, err))
	}
	return [KeySize]byte(k)
}

// objectKey is HKDF-Expand-SHA256(session key, "bulkbackup object v1" ||
// 0x00 || id), 32 bytes: the AES-256-GCM key of the object whose ID is id.
func objectKey(sessionKey *[KeySize]byte, id [KeySize]byte) [KeySize]byte {
	return derive(sessionKey[:], labelObject, string(id[:]))
}

// objectAEAD returns the AES-256-GCM of one object key.
func objectAEAD(key [KeySize]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(fmt.Sprintf("keyring: aes with a %d-byte key: %v", len(key), err))
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("keyring: gcm: %v", err))
	}
	return aead
}

// Sealer seals content objects to a repository's public key. It holds one
// session at a time (one ephemeral X25519 key, one ECDH) and starts a new
// one after MaxSessionObjects objects or when Rotate is called. Safe for
// concurrent use; one Sealer serves a whole process.
type Sealer struct {
	pub *ecdh.PublicKey

	limit int // objects per session: MaxSessionObjects, less in tests

	mu  sync.Mutex
	cur *session
	n   int // objects handed out in cur
}

// NewSealer returns a Sealer to the repository public key pub, the Public
// of a WriteKey. It fails for a public key of small order.
func NewSealer(pub *ecdh.PublicKey) (*Sealer, error) {
	if pub == nil || pub.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("keyring: new sealer: not an X25519 public key")
	}
	if err := checkPublic(pub); err != nil {
		return nil, fmt.Errorf("keyring: new sealer: %w", err)
	}
	return &Sealer{pub: pub, limit: MaxSessionObjects}, nil
}

// newSealerWith returns a Sealer whose first session uses the ephemeral
// key eph, for the known-answer test.
func newSealerWith(pub *ecdh.PublicKey, eph *ecdh.PrivateKey) (*Sealer, error) {
	s, err := newSession(eph, pub)
	if err != nil {
		return nil, err
	}
	return &Sealer{pub: pub, limit: MaxSessionObjects, cur: s}, nil
}

// rotateLocked starts a new session; s.mu is held.
func (s *Sealer) rotateLocked() {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("keyring: generate ephemeral key: %v", err)) // crypto/rand does not fail
	}
	cur, err := newSession(eph, s.pub)
	if err != nil {
		panic(fmt.Sprintf("keyring: ecdh with a checked public key: %v", err)) // NewSealer refused small orders
	}
	s.cur, s.n = cur, 0
}

// Rotate makes the next object start a new session, for example when a
// job ends.
func (s *Sealer) Rotate() {
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
}

// Next returns the Envelope of one object: the current session's
// ephemeral key and a fresh random nonce, to be laid out in the object's
// header before sealing it. Each call counts one object.
func (s *Sealer) Next() *Envelope {
	var nonce [NonceSize]byte
	rand.Read(nonce[:])
	return s.next(nonce)
}

func (s *Sealer) next(nonce [NonceSize]byte) *Envelope {
	s.mu.Lock()
	if s.cur == nil || s.n >= s.limit {
		s.rotateLocked()
	}
	s.n++
	e := &Envelope{s: s.cur, nonce: nonce}
	s.mu.Unlock()
	return e
}

// Envelope seals one object. It is used once: the nonce it drew is never
// used for another object.
type Envelope struct {
	s     *session
	nonce [NonceSize]byte
	used  atomic.Bool
}

// Ephemeral returns the ephemeral public key of the object's session, which
// the object's header must carry.
func (e *Envelope) Ephemeral() [EphemeralSize]byte { return e.s.ephemeral }

// Nonce returns the object's nonce, which its header must carry.
func (e *Envelope) Nonce() [NonceSize]byte { return e.nonce }

// Seal encrypts plaintext, the payload of the object whose ID is id, with
// AES-256-GCM under the object's key, authenticating aad (the object's
// header bytes, which carry the ephemeral key and nonce), and appends
// ciphertext || 16-byte tag to dst. To encrypt in place, pass
// plaintext[:0] as dst with room for Overhead more bytes; aad must not
// overlap the output. Seal panics when called twice on one Envelope.
func (e *Envelope) Seal(dst []byte, id [KeySize]byte, plaintext, aad []byte) []byte {
	if e.used.Swap(true) {
		panic("keyring: Envelope.Seal called twice; call Sealer.Next for each object")
	}
	return objectAEAD(objectKey(&e.s.key, id)).Seal(dst, e.nonce[:], plaintext, aad)
}

// openCacheSize bounds the session keys an Opener remembers.
const openCacheSize = 1024

// Opener opens content objects with the repository's private key. It
// remembers the session keys of the last openCacheSize sessions it opened
// objects of, so a restore does one X25519 per writer session, not per
// object. Safe for concurrent use.
type Opener struct {
	priv *ecdh.PrivateKey
	pub  []byte

	mu    sync.Mutex
	lru   *list.List // of *session, most recent first
	index map[[EphemeralSize]byte]*list.Element
}

// NewOpener returns an Opener with the repository private key priv.
func NewOpener(priv *ecdh.PrivateKey) *Opener {
	return &Opener{
		priv:  priv,
		pub:   priv.PublicKey().Bytes(),
		lru:   list.New(),
		index: make(map[[EphemeralSize]byte]*list.Element),
	}
}

// session returns the session of ephemeral and whether it came from the
// cache.
func (o *Opener) session(ephemeral [EphemeralSize]byte) (*session, bool, error) {
	o.mu.Lock()
	if el, ok := o.index[ephemeral]; ok {
		o.lru.MoveToFront(el)
		o.mu.Unlock()
		return el.Value.(*session), true, nil
	}
	o.mu.Unlock()
	pub, err := ecdh.X25519().NewPublicKey(ephemeral[:])
	if err != nil {
		return nil, false, err
	}
	shared, err := o.priv.ECDH(pub)
	if err != nil {
		return nil, false, fmt.Errorf("ephemeral key %x is of small order", ephemeral)
	}
	return &session{ephemeral: ephemeral, key: sessionKey(shared, ephemeral[:], o.pub)}, false, nil
}

// remember caches s.
func (o *Opener) remember(s *session) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if el, ok := o.index[s.ephemeral]; ok {
		o.lru.MoveToFront(el)
		return
	}
	o.index[s.ephemeral] = o.lru.PushFront(s)
	if o.lru.Len() > openCacheSize {
		old := o.lru.Remove(o.lru.Back()).(*session)
		delete(o.index, old.ephemeral)
	}
}

// ObjectKey returns the AES-256-GCM key of the object whose ID is id,
// sealed in the session of ephemeral: what a Grant holds for it.
func (o *Opener) ObjectKey(ephemeral [EphemeralSize]byte, id [KeySize]byte) ([KeySize]byte, error) {
	s, cached, err := o.session(ephemeral)
	if err != nil {
		return [KeySize]byte{}, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	if !cached {
		o.remember(s)
	}
	return objectKey(&s.key, id), nil
}

// Open decrypts ciphertext (ciphertext || tag), the payload of the object
// whose ID is id sealed in the session of ephemeral with nonce, checking
// aad, and appends the plaintext to dst. To decrypt in place, pass
// ciphertext[:0] as dst. It returns an error wrapping ErrAuth when the
// object was sealed to another key or any of its bytes, the header's
// included, was changed.
func (o *Opener) Open(dst []byte, ephemeral [EphemeralSize]byte, id [KeySize]byte, nonce [NonceSize]byte, ciphertext, aad []byte) ([]byte, error) {
	s, cached, err := o.session(ephemeral)
	if err != nil {
		return dst, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	out, err := openObject(dst, objectKey(&s.key, id), nonce, ciphertext, aad)
	if err != nil {
		return dst, err
	}
	if !cached {
		o.remember(s) // only sessions that opened something: garbage does not evict good keys
	}
	return out, nil
}

// openObject opens one object under its object key.
func openObject(dst []byte, key [KeySize]byte, nonce [NonceSize]byte, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < Overhead {
		return dst, fmt.Errorf("%w: payload of %d bytes is shorter than the %d-byte tag", ErrAuth, len(ciphertext), Overhead)
	}
	out, err := objectAEAD(key).Open(dst, nonce[:], ciphertext, aad)
	if err != nil {
		return dst, fmt.Errorf("%w: object", ErrAuth)
	}
	return out, nil
}
