package chunk

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
)

// This file holds the objects of encrypted repositories (docs/format.md
// section 9): content objects, which only the repository's private key (or
// a grant of it) opens, and metadata objects, which the holders of the
// metadata key open. Both are authenticated: any change to any byte of
// them, header included, is caught before a byte of their data is used.

// ContentOpener opens the payload of a content object: a *keyring.Opener,
// which holds the repository's private key, or a *keyring.Grant, which
// holds the keys of the objects one job reads.
type ContentOpener interface {
	Open(dst []byte, ephemeral [keyring.EphemeralSize]byte, id [keyring.KeySize]byte, nonce [keyring.NonceSize]byte,
		ciphertext, aad []byte) ([]byte, error)
}

var (
	_ ContentOpener = (*keyring.Opener)(nil)
	_ ContentOpener = (*keyring.Grant)(nil)
)

// SealContent appends the stored form of raw as a content object of an
// encrypted repository to dst: id is its chunk ID (keyring.WriteKey's MAC
// of raw), env the envelope of this object (keyring.Sealer.Next). The
// payload, compressed as Seal decides on the plaintext, is encrypted with
// AES-256-GCM under the object's key, the whole header being its
// additional data. A dst with capacity MaxSealedSize(len(raw)) beyond its
// length never grows.
func (s *Sealer) SealContent(dst []byte, id ID, raw []byte, env *keyring.Envelope) []byte {
	start := len(dst)
	dst = appendHeader(dst, EncryptionContent, ContentHeaderSize, int64(len(raw)), id)
	eph, nonce := env.Ephemeral(), env.Nonce()
	dst = append(append(dst, eph[:]...), nonce[:]...)
	dst = s.appendPayload(dst, start, ContentHeaderSize, raw)
	n := len(dst) - start - ContentHeaderSize
	binary.LittleEndian.PutUint64(dst[start+52:start+60], uint64(n+ContentOverhead))
	dst = slices.Grow(dst, ContentOverhead)
	payload := dst[start+ContentHeaderSize:]
	sealed := env.Seal(payload[:0], id, payload, dst[start:start+ContentHeaderSize])
	return dst[:start+ContentHeaderSize+len(sealed)]
}

// OpenContent opens obj, a content object of an encrypted repository that
// should hold chunk want, appending the raw bytes to dst: it checks the
// header, decrypts and authenticates the payload with o, decompresses it,
// and checks that the bytes' chunk ID under wk is want (any writer can
// seal an object; only this shows it holds the chunk its name says). It
// decrypts in place: obj's payload is overwritten. A damaged or tampered
// object, or one o has no key for, is a *CorruptError; the error of o
// (keyring.ErrAuth, keyring.ErrWrongJob) is in its chain too.
func OpenContent(dst []byte, want ID, obj []byte, o ContentOpener, wk *keyring.WriteKey) ([]byte, error) {
	h, err := checkObject(want, obj, EncryptionContent)
	if err != nil {
		return dst, err
	}
	payload := obj[h.HeaderLen:]
	plain, err := o.Open(payload[:0], h.Ephemeral, h.ID, h.Nonce, payload, obj[:h.HeaderLen])
	if err != nil {
		return dst, &CorruptError{ID: want, Reason: err.Error(), Err: err}
	}
	hasher := wk.NewHasher()
	return decode(dst, want, h, plain, func(raw []byte) ID { return hasher.Sum(raw) })
}

// SealMeta appends the stored form of raw as a metadata object of an
// encrypted repository to dst: id is the MAC of raw under wk (its
// ChunkID), name the object's repository key (snapshots/<id>,
// headers/<id>), which is authenticated with it so that the object cannot
// be presented under another name. The payload is nonce || ciphertext ||
// tag of XChaCha20-Poly1305 under wk's metadata key, the additional data
// being the header followed by name. It fails only for a key without
// metadata ability (keyring.ErrNoMeta).
func (s *Sealer) SealMeta(dst []byte, id ID, raw []byte, wk *keyring.WriteKey, name string) ([]byte, error) {
	start := len(dst)
	dst = appendHeader(dst, EncryptionMeta, HeaderSize, int64(len(raw)), id)
	p := s.appendPayload(dst, start, HeaderSize, raw)
	dst = p[:start+HeaderSize] // the plaintext payload stays in p's room, to be encrypted from a copy
	plain := slices.Clone(p[start+HeaderSize:])
	binary.LittleEndian.PutUint64(dst[start+52:start+60], uint64(len(plain)+MetaOverhead))
	aad := append(slices.Clone(dst[start:start+HeaderSize]), name...)
	out, err := wk.SealMeta(dst, plain, aad)
	if err != nil {
		return dst[:start], fmt.Errorf("chunk: seal %s: %w", name, err)
	}
	return out, nil
}

// OpenMeta is OpenMetaStream for a metadata object small enough to decode
// whole (MaxRawSize bytes at most, such as a directory object): it
// authenticates and decrypts obj in place, decodes it, checks that its MAC
// under wk is want and appends the raw bytes to dst. A damaged or tampered
// object is a *CorruptError.
func OpenMeta(dst []byte, want ID, obj []byte, wk *keyring.WriteKey, name string) ([]byte, error) {
	h, err := checkStream(want, obj, MaxRawSize, EncryptionMeta)
	if err != nil {
		return dst, err
	}
	aad := append(slices.Clone(obj[:h.HeaderLen]), name...)
	sealed := obj[h.HeaderLen:]
	plain, err := wk.OpenMeta(sealed[keyring.MetaNonceSize:keyring.MetaNonceSize], sealed, aad) // in place
	if err != nil {
		return dst, &CorruptError{ID: want, Reason: err.Error(), Err: err}
	}
	hasher := wk.NewHasher()
	return decode(dst, want, h, plain, func(raw []byte) ID { return hasher.Sum(raw) })
}

// OpenMetaStream is OpenStream for a metadata object of an encrypted
// repository, stored under the repository key name: it authenticates and
// decrypts obj (in place: obj is overwritten) with wk's metadata key, then
// returns a reader of the raw bytes that decodes them as it is read and
// checks at their end that their MAC under wk is want. An object that does
// not authenticate is a *CorruptError at once.
func OpenMetaStream(want ID, obj []byte, maxRaw int64, wk *keyring.WriteKey, name string) (io.ReadCloser, error) {
	h, err := checkStream(want, obj, maxRaw, EncryptionMeta)
	if err != nil {
		return nil, err
	}
	aad := append(slices.Clone(obj[:h.HeaderLen]), name...)
	sealed := obj[h.HeaderLen:]
	plain, err := wk.OpenMeta(sealed[keyring.MetaNonceSize:keyring.MetaNonceSize], sealed, aad) // in place
	if err != nil {
		return nil, &CorruptError{ID: want, Reason: err.Error(), Err: err}
	}
	return newStreamReader(want, h, plain, wk.NewMAC())
}
