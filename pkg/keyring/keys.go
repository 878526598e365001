package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size in bytes of every symmetric key, chunk ID and X25519
// key of this package.
const KeySize = 32

// Labels of the HKDF-Expand derivations (docs/encryption.md, section 2).
// Each is used for one purpose only; none contains a NUL byte, so
// label || 0x00 || context is unambiguous.
const (
	labelChunkID  = "bulkbackup chunk id v1"
	labelStaging  = "bulkbackup staging v1"
	labelMeta     = "bulkbackup meta v1"
	labelSession  = "bulkbackup session v1"
	labelObject   = "bulkbackup object v1"
	labelKeyCheck = "bulkbackup key check v1"
)

// derive returns HKDF-Expand-SHA256(root, info, 32) with info = label, or
// label || 0x00 || context when context is not empty.
func derive(root []byte, label, context string) [KeySize]byte {
	info := label
	if context != "" {
		info += "\x00" + context
	}
	out, err := hkdf.Expand(sha256.New, root, info, KeySize)
	if err != nil {
		panic(fmt.Sprintf("keyring: hkdf expand of %d bytes: %v", KeySize, err)) // only for lengths > 255*32
	}
	return [KeySize]byte(out)
}

// WriteKey is what the writing side of the fleet holds: readers, compressors
// and the coordinator. It computes chunk IDs, seals content objects to the
// repository's public key (NewSealer), seals staging objects and, unless it
// was narrowed, seals and opens metadata. It cannot open content objects.
//
// Build one with GenerateKeys (the WriteKey field of Keys), ParseWriteKey
// or WithoutMeta; a WriteKey is not modified after that and is safe
// for concurrent use.
type WriteKey struct {
	// Repository is the repository's ID, from its config. It is not secret;
	// it keeps a key from being used with another repository.
	Repository string
	// ID is the root of the chunk ID MAC key and of the staging keys.
	ID [KeySize]byte
	// Meta is the root of the metadata keys: the repository's on the
	// coordinator's key, nil on a key without metadata ability
	// (WithoutMeta), the readers' and compressors'.
	Meta *[KeySize]byte
	// Public is the repository's X25519 public key.
	Public *ecdh.PublicKey
}

// Keys is all the key material of a repository. Only restore, verify and
// key management need it; the fleet holds its WriteKey. Keys is stored in
// the repository wrapped (WrapPassword, WrapRecipients).
type Keys struct {
	// WriteKey is the repository's write key with metadata: Meta is the
	// repository's Meta root.
	WriteKey
	// Private is the repository's X25519 private key; Public is its public
	// key.
	Private *ecdh.PrivateKey
}

// GenerateKeys returns fresh random keys for the repository whose ID is
// repository.
func GenerateKeys(repository string) (*Keys, error) {
	if repository == "" {
		return nil, errors.New("keyring: generate keys: empty repository ID")
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keyring: generate keys: %w", err)
	}
	k := &Keys{WriteKey: WriteKey{Repository: repository, Meta: new([KeySize]byte)}, Private: priv}
	rand.Read(k.ID[:])
	rand.Read(k.Meta[:])
	k.Public = priv.PublicKey()
	return k, nil
}

// CheckRepository returns an error wrapping ErrWrongRepository unless the
// key belongs to the repository whose ID is id.
func (k *WriteKey) CheckRepository(id string) error {
	if k.Repository != id {
		return fmt.Errorf("%w: the key is for repository %q, not %q", ErrWrongRepository, k.Repository, id)
	}
	return nil
}

// Check returns the key check of the key's repository: HMAC-SHA256 under
// Expand(ID, "bulkbackup key check v1") of the repository ID, a zero byte
// and the public key. Every holder of a write key computes it; a
// repository's config records it, so a key that is not the repository's
// (a damaged or planted key object, a write key file of another
// repository under the same ID) is refused before it writes or reads
// anything.
func (k *WriteKey) Check() [KeySize]byte {
	ck := derive(k.ID[:], labelKeyCheck, "")
	mac := hmac.New(sha256.New, ck[:])
	mac.Write([]byte(k.Repository))
	mac.Write([]byte{0})
	mac.Write(k.Public.Bytes())
	return [KeySize]byte(mac.Sum(nil))
}

// Fingerprint returns the first 16 bytes of Check in hex, in groups of
// four digits: what people compare to tell that two keys are the same
// repository's.
func (k *WriteKey) Fingerprint() string {
	c := k.Check()
	h := hex.EncodeToString(c[:16])
	var b strings.Builder
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(h[i : i+4])
	}
	return b.String()
}

// WithoutMeta returns the key without metadata ability: what a compressor
// needs, which writes chunks and reads no metadata.
func (k *WriteKey) WithoutMeta() *WriteKey {
	return &WriteKey{Repository: k.Repository, ID: k.ID, Public: k.Public}
}

// validate checks what a parsed or marshalled key must satisfy.
func (k *WriteKey) validate() error {
	switch {
	case k.Repository == "":
		return errors.New("empty repository ID")
	case k.Public == nil || k.Public.Curve() != ecdh.X25519():
		return errors.New("no X25519 public key")
	}
	return checkPublic(k.Public)
}

// checkPublic refuses a public key of small order, to which every ECDH
// gives the all-zero secret: a writer would seal objects anyone can open.
func checkPublic(pub *ecdh.PublicKey) error {
	probe, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if _, err := probe.ECDH(pub); err != nil {
		return fmt.Errorf("public key %x is of small order", pub.Bytes())
	}
	return nil
}

// ChunkID returns the ID of a chunk whose raw bytes are raw:
// HMAC-SHA256 under the chunk ID key. It allocates a MAC per call; the hot
// path uses a Hasher.
func (k *WriteKey) ChunkID(raw []byte) [KeySize]byte {
	return k.NewHasher().Sum(raw)
}

// NewMAC returns the chunk ID MAC as a streaming hash.Hash, for data read
// as a stream (a manifest): its Sum is the ID of the bytes written.
func (k *WriteKey) NewMAC() hash.Hash {
	mk := derive(k.ID[:], labelChunkID, "")
	return hmac.New(sha256.New, mk[:])
}

// Hasher computes chunk IDs without allocating. It is not safe for
// concurrent use: each goroutine makes its own with NewHasher.
type Hasher struct {
	mac hash.Hash
	buf []byte
}

// NewHasher returns a Hasher of the key's chunk IDs.
func (k *WriteKey) NewHasher() *Hasher {
	return &Hasher{mac: k.NewMAC(), buf: make([]byte, 0, sha256.Size)}
}

// Sum returns the chunk ID of raw.
func (h *Hasher) Sum(raw []byte) [KeySize]byte {
	h.mac.Reset()
	h.mac.Write(raw)
	h.buf = h.mac.Sum(h.buf[:0])
	return [KeySize]byte(h.buf)
}

// MetaNonceSize is the size of the nonce SealMeta puts before the
// ciphertext.
const MetaNonceSize = chacha20poly1305.NonceSizeX

// MetaOverhead is how many bytes SealMeta adds: a 24-byte nonce before the
// ciphertext and a 16-byte tag after it.
const MetaOverhead = MetaNonceSize + chacha20poly1305.Overhead

// metaAEAD returns the XChaCha20-Poly1305 of the key's metadata.
func (k *WriteKey) metaAEAD() (cipher.AEAD, error) {
	if k.Meta == nil {
		return nil, ErrNoMeta
	}
	mk := derive(k.Meta[:], labelMeta, "")
	return chacha20poly1305.NewX(mk[:])
}

// SealMeta encrypts plaintext, metadata the writing side reads back
// (snapshot headers, incremental indexes), and appends nonce || ciphertext
// || tag to dst. aad is authenticated with it and must be given again to
// OpenMeta: the object's repository key, so that a sealed object cannot be
// moved to another name. It fails only on a key without metadata ability
// (ErrNoMeta).
func (k *WriteKey) SealMeta(dst, plaintext, aad []byte) ([]byte, error) {
	var nonce [chacha20poly1305.NonceSizeX]byte
	rand.Read(nonce[:])
	return k.sealMeta(dst, nonce, plaintext, aad)
}

// sealMeta is SealMeta with a given nonce, for the known-answer test.
func (k *WriteKey) sealMeta(dst []byte, nonce [chacha20poly1305.NonceSizeX]byte, plaintext, aad []byte) ([]byte, error) {
	aead, err := k.metaAEAD()
	if err != nil {
		return dst, err
	}
	dst = append(dst, nonce[:]...)
	return aead.Seal(dst, nonce[:], plaintext, aad), nil
}

// OpenMeta decrypts what SealMeta sealed with the same aad and appends the
// plaintext to dst. It returns an error wrapping ErrAuth when sealed is
// short, was sealed under another key or with other aad, or was changed,
// and ErrNoMeta on a key without metadata ability.
func (k *WriteKey) OpenMeta(dst, sealed, aad []byte) ([]byte, error) {
	aead, err := k.metaAEAD()
	if err != nil {
		return dst, err
	}
	if len(sealed) < MetaOverhead {
		return dst, fmt.Errorf("%w: sealed metadata of %d bytes is shorter than its %d-byte overhead", ErrAuth, len(sealed), MetaOverhead)
	}
	n := chacha20poly1305.NonceSizeX
	out, err := aead.Open(dst, sealed[:n], sealed[n:], aad)
	if err != nil {
		return dst, fmt.Errorf("%w: metadata", ErrAuth)
	}
	return out, nil
}

// StagingOverhead is how many bytes SealStaging adds: a 12-byte nonce
// before the ciphertext and a 16-byte tag after it.
const StagingOverhead = NonceSize + Overhead

// stagingAEAD returns the AES-256-GCM of job's staging objects.
func (k *WriteKey) stagingAEAD(job string) (cipher.AEAD, error) {
	if job == "" {
		return nil, errors.New("keyring: staging: empty job ID")
	}
	sk := derive(k.ID[:], labelStaging, job)
	block, err := aes.NewCipher(sk[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealStaging encrypts the raw bytes of a chunk staged in the repository
// for job (too large for a message), appending nonce || ciphertext || tag
// to dst, so that the bucket never holds raw data. Every holder of a write
// key can open it: readers stage, compressors read. aad should be the
// staging object's key. It fails only for an empty job ID.
func (k *WriteKey) SealStaging(dst []byte, job string, plaintext, aad []byte) ([]byte, error) {
	aead, err := k.stagingAEAD(job)
	if err != nil {
		return dst, err
	}
	var nonce [NonceSize]byte
	rand.Read(nonce[:])
	return sealStaging(dst, aead, nonce, plaintext, aad), nil
}

// sealStaging seals with a given nonce, for the known-answer test.
func sealStaging(dst []byte, aead cipher.AEAD, nonce [NonceSize]byte, plaintext, aad []byte) []byte {
	dst = append(dst, nonce[:]...)
	return aead.Seal(dst, nonce[:], plaintext, aad)
}

// OpenStaging decrypts what SealStaging sealed for job with the same aad,
// appending the raw bytes to dst. It returns an error wrapping ErrAuth
// when sealed is short, is for another job or aad, or was changed.
func (k *WriteKey) OpenStaging(dst []byte, job string, sealed, aad []byte) ([]byte, error) {
	aead, err := k.stagingAEAD(job)
	if err != nil {
		return dst, err
	}
	if len(sealed) < StagingOverhead {
		return dst, fmt.Errorf("%w: staged object of %d bytes is shorter than its %d-byte overhead", ErrAuth, len(sealed), StagingOverhead)
	}
	out, err := aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return dst, fmt.Errorf("%w: staged object", ErrAuth)
	}
	return out, nil
}

// errMarshal is returned by MarshalJSON: secret keys are serialised only by
// their own formats (Marshal, WrapPassword, WrapRecipients), never by a
// struct that happens to contain them.
var errMarshal = errors.New("keyring: refusing to marshal secret keys as JSON (use WriteKey.Marshal or WrapPassword)")

// String describes the key without its secrets.
func (k WriteKey) String() string {
	s := fmt.Sprintf("write key of repository %q", k.Repository)
	if k.Meta == nil {
		s += ", no metadata"
	}
	return s
}

// Format prints String for every verb, so that no secret reaches a log
// through fmt.
func (k WriteKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue logs the key as String.
func (k WriteKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON refuses: see Marshal.
func (k WriteKey) MarshalJSON() ([]byte, error) { return nil, errMarshal }

// String describes the keys without their secrets.
func (k Keys) String() string { return fmt.Sprintf("keys of repository %q", k.Repository) }

// Format prints String for every verb.
func (k Keys) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue logs the keys as String.
func (k Keys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON refuses: Keys are stored only wrapped.
func (k Keys) MarshalJSON() ([]byte, error) { return nil, errMarshal }
