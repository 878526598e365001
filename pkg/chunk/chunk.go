package chunk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
)

// Format constants of the stored chunk object (docs/format.md).
const (
	// Magic opens every stored object.
	Magic = "BKCH"
	// FormatVersion is the object format this package writes. It reads
	// FormatVersion1 objects too.
	FormatVersion = 2
	// FormatVersion1 is the first object format, whose header does not
	// record the payload's length.
	FormatVersion1 = 1
	// HeaderSize is the size of the fixed header of format version 2; an
	// object's header is longer when it carries an extension (the
	// encryption parameters of a content object: ContentHeaderSize).
	HeaderSize = 60
	// headerSizeV1 is the fixed header of FormatVersion1 objects.
	headerSizeV1 = 52
	// MaxRawSize bounds the raw length an object may claim, so a corrupt
	// header cannot make Open allocate without limit.
	MaxRawSize = 1 << 30
)

// Compression identifies how an object's payload is encoded.
type Compression uint8

// Payload encodings.
const (
	CompressionNone Compression = 0
	CompressionZstd Compression = 1
)

// Hash algorithm identifiers recorded in the header: how the ID is
// computed from the raw bytes.
const (
	// HashSHA256: the ID is the SHA-256 of the raw bytes (plaintext
	// repositories).
	HashSHA256 uint8 = 1
	// HashHMACSHA256: the ID is an HMAC-SHA256 of the raw bytes under the
	// repository's chunk ID key (encrypted repositories,
	// docs/encryption.md section 3).
	HashHMACSHA256 uint8 = 2
)

// Encryption identifiers recorded in the header (docs/format.md section 9).
const (
	// EncryptionNone: the payload is not encrypted.
	EncryptionNone uint8 = 0
	// EncryptionContent: a content object (a chunk), encrypted to the
	// repository's public key with AES-256-GCM under a key of its own; the
	// header's extension holds the writer session's ephemeral key and the
	// nonce.
	EncryptionContent uint8 = 1
	// EncryptionMeta: a metadata object (a manifest or snapshot header),
	// sealed with XChaCha20-Poly1305 under the repository's metadata key;
	// the payload is nonce || ciphertext || tag.
	EncryptionMeta uint8 = 2
)

// Sizes of encrypted objects.
const (
	// ContentHeaderSize is the header of a content object: the fixed
	// header, then the ephemeral key (32 bytes) and the nonce (12 bytes).
	ContentHeaderSize = HeaderSize + keyring.EphemeralSize + keyring.NonceSize
	// ContentOverhead is what encryption adds to a content object's
	// payload: the AES-GCM tag.
	ContentOverhead = keyring.Overhead
	// MetaOverhead is what encryption adds to a metadata object's
	// payload: the 24-byte nonce and the 16-byte tag.
	MetaOverhead = keyring.MetaOverhead
)

// MaxSealedSize is the room Seal, SealContent or SealMeta of s needs for n
// raw bytes, the compressor's output included while it is weighed against
// the raw bytes (zstd makes incompressible data a little larger): a buffer
// of this capacity never grows.
func (s *Sealer) MaxSealedSize(n int) int {
	return ContentHeaderSize + max(s.enc.MaxEncodedSize(n), n) + MetaOverhead
}

// IDSize is the length of an ID in bytes.
const IDSize = sha256.Size

// ID identifies a chunk: the SHA-256 of its raw bytes.
type ID [IDSize]byte

// Sum returns the ID of raw.
func Sum(raw []byte) ID { return sha256.Sum256(raw) }

// String returns the ID as 64 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("chunk: parse id %q: want %d hex digits", s, 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk: parse id %q: %w", s, err)
	}
	if strings.ToLower(s) != s {
		return id, fmt.Errorf("chunk: parse id %q: hex must be lowercase", s)
	}
	return id, nil
}

// Level is a zstd compression level.
type Level int

// Compression levels, named as on the command line.
const (
	LevelFastest Level = iota + 1
	LevelDefault
	LevelBetter
	LevelBest
)

var levelNames = map[Level]string{
	LevelFastest: "fastest", LevelDefault: "default", LevelBetter: "better", LevelBest: "best",
}

// ParseLevel parses "fastest", "default", "better" or "best"; "" means fastest.
func ParseLevel(s string) (Level, error) {
	if s == "" {
		return LevelFastest, nil
	}
	for l, name := range levelNames {
		if name == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("chunk: unknown compression level %q (want fastest, default, better or best)", s)
}

// String returns the level's command-line name.
func (l Level) String() string {
	if name, ok := levelNames[l]; ok {
		return name
	}
	return fmt.Sprintf("level(%d)", int(l))
}

func (l Level) zstd() zstd.EncoderLevel {
	switch l {
	case LevelDefault:
		return zstd.SpeedDefault
	case LevelBetter:
		return zstd.SpeedBetterCompression
	case LevelBest:
		return zstd.SpeedBestCompression
	default:
		return zstd.SpeedFastest
	}
}

// Sealer compresses and frames chunks at one level. One Sealer is shared by
// all of a process's workers: Seal is safe for concurrent use.
type Sealer struct {
	enc   *zstd.Encoder
	level Level
}

// NewSealer returns a Sealer compressing at level.
func NewSealer(level Level) (*Sealer, error) {
	if _, ok := levelNames[level]; !ok {
		return nil, fmt.Errorf("chunk: invalid level %d", level)
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level.zstd()),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false), // the header's SHA-256 already covers the data
		zstd.WithZeroFrames(true),
	)
	if err != nil {
		return nil, fmt.Errorf("chunk: new zstd encoder: %w", err)
	}
	return &Sealer{enc: enc, level: level}, nil
}

// Level returns the Sealer's compression level.
func (s *Sealer) Level() Level { return s.level }

// Seal appends the stored form of raw, whose ID is id, to dst and returns the
// extended slice: an object of a plaintext repository. The payload is
// stored uncompressed when zstd does not make it smaller (random data),
// which also makes reading it back cheaper.
func (s *Sealer) Seal(dst []byte, id ID, raw []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, EncryptionNone, HeaderSize, int64(len(raw)), id)
	dst = s.appendPayload(dst, start, HeaderSize, raw)
	return setPayloadLen(dst, start, HeaderSize)
}

// appendPayload appends raw, compressed unless that does not make it
// smaller, after the header at dst[start:start+headerLen], and records
// the choice in the header.
func (s *Sealer) appendPayload(dst []byte, start, headerLen int, raw []byte) []byte {
	dst = s.enc.EncodeAll(raw, dst)
	if len(dst)-start-headerLen < len(raw) {
		dst[start+5] = byte(CompressionZstd)
		return dst
	}
	dst[start+5] = byte(CompressionNone)
	return append(dst[:start+headerLen], raw...)
}

// appendHeader appends the fixed header of an object with encryption enc
// and a header of headerLen bytes; the caller appends the extension, and
// appendPayload and setPayloadLen fill in the compression and the
// payload's length.
func appendHeader(dst []byte, enc uint8, headerLen uint32, rawLen int64, id ID) []byte {
	hash := HashSHA256
	if enc != EncryptionNone {
		hash = HashHMACSHA256
	}
	dst = append(dst, Magic...)
	dst = append(dst, FormatVersion, byte(CompressionNone), enc, hash)
	dst = binary.LittleEndian.AppendUint32(dst, headerLen)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(rawLen))
	dst = append(dst, id[:]...)
	return binary.LittleEndian.AppendUint64(dst, 0)
}

// setPayloadLen records the length of the payload that follows the header
// of headerLen bytes starting at obj[start].
func setPayloadLen(obj []byte, start, headerLen int) []byte {
	binary.LittleEndian.PutUint64(obj[start+52:start+60], uint64(len(obj)-start-headerLen))
	return obj
}

// Header is the decoded fixed header of a stored object.
type Header struct {
	Version     uint8
	Compression Compression
	Encryption  uint8
	HashAlg     uint8
	HeaderLen   uint32
	RawLen      int64
	ID          ID
	// PayloadLen is the length of the stored payload; -1 in a
	// FormatVersion1 object, whose header does not record it.
	PayloadLen int64
	// Ephemeral and Nonce are, in a content object (EncryptionContent),
	// its writer session's ephemeral public key and its nonce.
	Ephemeral [keyring.EphemeralSize]byte
	Nonce     [keyring.NonceSize]byte
}

// overhead is how many bytes the payload's encryption adds.
func (h Header) overhead() int64 {
	switch h.Encryption {
	case EncryptionContent:
		return ContentOverhead
	case EncryptionMeta:
		return MetaOverhead
	}
	return 0
}

// Size returns the length the whole object must have, as its header
// records it, and false when the header cannot tell (a FormatVersion1
// object with a compressed payload).
func (h Header) Size() (int64, bool) {
	switch {
	case h.PayloadLen >= 0:
		return int64(h.HeaderLen) + h.PayloadLen, true
	case h.Compression == CompressionNone:
		return int64(h.HeaderLen) + h.RawLen, true
	}
	return 0, false
}

// ErrFormat is wrapped by errors about objects this package cannot parse.
var ErrFormat = errors.New("chunk: invalid object format")

// MaxHeaderPrefix is how many leading bytes of an object ParseHeader needs
// at most to read its header, whatever its version and encryption.
const MaxHeaderPrefix = ContentHeaderSize

// ParseHeader decodes and checks the header at the start of obj, which may
// be the whole object or only its first bytes (at least the fixed header:
// MaxHeaderPrefix covers every version). It does not check the object's
// length against the header: Open does, and so does CheckSize for a
// caller that knows only the length.
func ParseHeader(obj []byte) (Header, error) {
	h := Header{PayloadLen: -1}
	if len(obj) < headerSizeV1 {
		return h, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrFormat, len(obj), headerSizeV1)
	}
	if string(obj[:4]) != Magic {
		return h, fmt.Errorf("%w: bad magic %q", ErrFormat, obj[:4])
	}
	h.Version, h.Compression, h.Encryption, h.HashAlg = obj[4], Compression(obj[5]), obj[6], obj[7]
	h.HeaderLen = binary.LittleEndian.Uint32(obj[8:12])
	raw := binary.LittleEndian.Uint64(obj[12:20])
	copy(h.ID[:], obj[20:52])
	fixed := uint32(headerSizeV1)
	switch h.Version {
	case FormatVersion1:
	case FormatVersion:
		fixed = HeaderSize
		if len(obj) < HeaderSize {
			return h, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrFormat, len(obj), HeaderSize)
		}
		payload := binary.LittleEndian.Uint64(obj[52:60])
		if payload > MaxRawSize+uint64(MaxRawSize/8) { // zstd never grows data by an eighth
			return h, fmt.Errorf("%w: payload length %d out of range", ErrFormat, payload)
		}
		h.PayloadLen = int64(payload)
	default:
		return h, fmt.Errorf("%w: format version %d (this build reads %d and %d)", ErrFormat, h.Version, FormatVersion1, FormatVersion)
	}
	// Each encryption has its hash algorithm and header length: nothing
	// else is ever written, so nothing else is read.
	wantHash, wantHeader := HashSHA256, uint32(0)
	switch h.Encryption {
	case EncryptionNone:
	case EncryptionContent:
		wantHash, wantHeader = HashHMACSHA256, ContentHeaderSize
	case EncryptionMeta:
		wantHash, wantHeader = HashHMACSHA256, HeaderSize
	default:
		return h, fmt.Errorf("%w: encryption %d is not supported by this build", ErrFormat, h.Encryption)
	}
	switch {
	case h.Compression != CompressionNone && h.Compression != CompressionZstd:
		return h, fmt.Errorf("%w: unknown compression %d", ErrFormat, h.Compression)
	case h.Encryption != EncryptionNone && h.Version != FormatVersion:
		return h, fmt.Errorf("%w: encryption %d in format version %d", ErrFormat, h.Encryption, h.Version)
	case h.HashAlg != wantHash:
		return h, fmt.Errorf("%w: hash algorithm %d with encryption %d", ErrFormat, h.HashAlg, h.Encryption)
	case h.HeaderLen < fixed || h.HeaderLen > MaxRawSize:
		return h, fmt.Errorf("%w: header length %d out of range", ErrFormat, h.HeaderLen)
	case wantHeader != 0 && h.HeaderLen != wantHeader:
		return h, fmt.Errorf("%w: header length %d with encryption %d (want %d)", ErrFormat, h.HeaderLen, h.Encryption, wantHeader)
	case raw > MaxRawSize:
		return h, fmt.Errorf("%w: raw length %d exceeds %d", ErrFormat, raw, MaxRawSize)
	case h.PayloadLen >= 0 && h.PayloadLen < h.overhead():
		return h, fmt.Errorf("%w: payload of %d bytes is shorter than its encryption's %d", ErrFormat, h.PayloadLen, h.overhead())
	case h.Compression == CompressionNone && h.PayloadLen >= 0 && h.PayloadLen != int64(raw)+h.overhead():
		return h, fmt.Errorf("%w: uncompressed payload of %d bytes for %d raw bytes", ErrFormat, h.PayloadLen, raw)
	}
	if h.Encryption == EncryptionContent {
		if len(obj) < ContentHeaderSize {
			return h, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header of an encrypted object", ErrFormat, len(obj), ContentHeaderSize)
		}
		copy(h.Ephemeral[:], obj[HeaderSize:])
		copy(h.Nonce[:], obj[HeaderSize+keyring.EphemeralSize:])
	}
	h.RawLen = int64(raw)
	return h, nil
}

// CheckSize checks that an object of size bytes, whose leading bytes are
// prefix, is as long as its header says: it catches a truncated or extended
// object without reading it. It returns the header, and an error matching
// ErrFormat when the header is invalid or the size is wrong. A
// FormatVersion1 object with a compressed payload does not record its
// length: CheckSize then returns ErrUnknownSize.
func CheckSize(prefix []byte, size int64) (Header, error) {
	h, err := ParseHeader(prefix)
	if err != nil {
		return h, err
	}
	want, ok := h.Size()
	if !ok {
		return h, ErrUnknownSize
	}
	if size != want {
		return h, fmt.Errorf("%w: object holds %d bytes, its header says %d", ErrFormat, size, want)
	}
	return h, nil
}

// ErrUnknownSize is returned by CheckSize for an object whose header does
// not record how long it is.
var ErrUnknownSize = errors.New("chunk: object format 1 does not record its compressed length")

// CorruptError reports a stored object that does not decode to the chunk it
// should hold.
type CorruptError struct {
	ID     ID     // the chunk that was asked for
	Reason string // what was wrong
	// Err is the error that found it, when it has one callers may test
	// for (an encrypted object that does not authenticate:
	// keyring.ErrAuth; one a grant does not cover: keyring.ErrWrongJob).
	Err error
}

// Unwrap returns Err.
func (e *CorruptError) Unwrap() error { return e.Err }

func (e *CorruptError) Error() string {
	return fmt.Sprintf("chunk %s is corrupt: %s", e.ID, e.Reason)
}

// ErrCorrupt is matched by every *CorruptError with errors.Is.
var ErrCorrupt = errors.New("chunk: corrupt")

// Is makes errors.Is(err, ErrCorrupt) true for a *CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

var (
	decoderOnce sync.Once
	decoder     *zstd.Decoder
)

func sharedDecoder() *zstd.Decoder {
	decoderOnce.Do(func() {
		var err error
		decoder, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxRawSize),
			// Decode no more than the room Open gives: the header's raw
			// length. A hostile frame cannot make it allocate more.
			zstd.WithDecodeAllCapLimit(true),
		)
		if err != nil {
			panic(fmt.Sprintf("chunk: zstd decoder with static options: %v", err))
		}
	})
	return decoder
}

// Open decodes obj, an object of a plaintext repository which should hold
// chunk want, appending the raw bytes to dst. It returns a *CorruptError
// when the object cannot be decoded, is encrypted, is for another chunk, or
// decodes to bytes whose hash differs. Safe for concurrent use.
func Open(dst []byte, want ID, obj []byte) ([]byte, error) {
	h, err := checkObject(want, obj, EncryptionNone)
	if err != nil {
		return dst, err
	}
	return decode(dst, want, h, obj[h.HeaderLen:], Sum)
}

// checkObject parses obj's header and checks that it holds chunk want,
// with the encryption enc, at the length its header records.
func checkObject(want ID, obj []byte, enc uint8) (Header, error) {
	h, err := ParseHeader(obj)
	if err != nil {
		return h, &CorruptError{ID: want, Reason: err.Error()}
	}
	switch {
	case h.Encryption != enc:
		return h, &CorruptError{ID: want, Reason: fmt.Sprintf("%s object where %s is expected", encryptionName(h.Encryption), encryptionName(enc))}
	case h.ID != want:
		return h, &CorruptError{ID: want, Reason: fmt.Sprintf("header names chunk %s", h.ID)}
	case int64(h.HeaderLen) > int64(len(obj)):
		return h, &CorruptError{ID: want, Reason: fmt.Sprintf("object of %d bytes is shorter than its %d-byte header", len(obj), h.HeaderLen)}
	}
	if size, ok := h.Size(); ok && size != int64(len(obj)) {
		return h, &CorruptError{ID: want, Reason: fmt.Sprintf("object holds %d bytes, its header says %d", len(obj), size)}
	}
	return h, nil
}

// encryptionName names an encryption identifier in errors.
func encryptionName(enc uint8) string {
	switch enc {
	case EncryptionNone:
		return "an unencrypted"
	case EncryptionContent:
		return "an encrypted content"
	case EncryptionMeta:
		return "an encrypted metadata"
	}
	return fmt.Sprintf("an encryption %d", enc)
}

// decode decodes payload, the plaintext payload of the object whose header
// is h, appending the raw bytes to dst, and checks their length and that
// sum of them is want.
func decode(dst []byte, want ID, h Header, payload []byte, sum func([]byte) ID) ([]byte, error) {
	var err error
	start := len(dst)
	switch h.Compression {
	case CompressionNone:
		dst = append(dst, payload...)
	case CompressionZstd:
		if cap(dst)-start < int(h.RawLen) {
			grown := make([]byte, start, start+int(h.RawLen))
			copy(grown, dst)
			dst = grown
		}
		dst, err = sharedDecoder().DecodeAll(payload, dst)
		if err != nil {
			return dst[:start], &CorruptError{ID: want, Reason: fmt.Sprintf("zstd: %v", err)}
		}
	}
	raw := dst[start:]
	if int64(len(raw)) != h.RawLen {
		return dst[:start], &CorruptError{ID: want, Reason: fmt.Sprintf("decoded %d bytes, header says %d", len(raw), h.RawLen)}
	}
	if got := sum(raw); got != want {
		return dst[:start], &CorruptError{ID: want, Reason: fmt.Sprintf("data hashes to %s", got)}
	}
	return dst, nil
}

// OpenStream is Open for a large object read as a stream, such as a
// manifest: it returns a reader of the raw bytes that decodes as it is read
// and holds no more than a decoder's window in memory. The data is checked
// against want as it ends: the read that would return io.EOF returns a
// *CorruptError instead when the bytes did not hash to want or were not
// raw_len long, so a caller must read to the end before trusting what it
// read. maxRaw, when positive, refuses up front an object whose header
// claims more raw bytes. Close releases the decoder.
func OpenStream(want ID, obj []byte, maxRaw int64) (io.ReadCloser, error) {
	h, err := checkStream(want, obj, maxRaw, EncryptionNone)
	if err != nil {
		return nil, err
	}
	return newStreamReader(want, h, obj[h.HeaderLen:], sha256.New())
}

// checkStream is checkObject for OpenStream and OpenMetaStream, which also
// refuse an object that claims more than maxRaw raw bytes.
func checkStream(want ID, obj []byte, maxRaw int64, enc uint8) (Header, error) {
	if h, err := ParseHeader(obj); err == nil && maxRaw > 0 && h.RawLen > maxRaw {
		return h, fmt.Errorf("%w: %d bytes when decoded, more than the %d this reader accepts", ErrTooLarge, h.RawLen, maxRaw)
	}
	return checkObject(want, obj, enc)
}

// newStreamReader returns the reader of OpenStream over payload, the
// plaintext payload of the object whose header is h; sum hashes the raw
// bytes into their ID.
func newStreamReader(want ID, h Header, payload []byte, sum hash.Hash) (io.ReadCloser, error) {
	sr := &streamReader{want: want, rawLen: h.RawLen, sum: sum}
	rd := bytes.NewReader(payload)
	switch h.Compression {
	case CompressionNone:
		sr.src = rd
	case CompressionZstd:
		dec, err := zstd.NewReader(rd, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(uint64(MaxRawSize)))
		if err != nil {
			return nil, &CorruptError{ID: want, Reason: fmt.Sprintf("zstd: %v", err)}
		}
		sr.src, sr.close = dec, dec.Close
	}
	return sr, nil
}

// ErrTooLarge is wrapped by OpenStream when an object claims more raw bytes
// than its reader accepts.
var ErrTooLarge = errors.New("chunk: object too large")

// streamReader decodes an object as it is read and checks its length and
// hash at the end.
type streamReader struct {
	want   ID
	rawLen int64
	src    io.Reader
	close  func()
	sum    hash.Hash
	n      int64
	err    error
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if room := r.rawLen - r.n; int64(len(p)) > room+1 {
		p = p[:room+1] // one byte past raw_len is enough to tell it is too long
	}
	n, err := r.src.Read(p)
	r.n += int64(n)
	r.sum.Write(p[:n])
	switch {
	case r.n > r.rawLen:
		r.err = &CorruptError{ID: r.want, Reason: fmt.Sprintf("decodes to more than the header's %d bytes", r.rawLen)}
		return 0, r.err
	case errors.Is(err, io.EOF):
		var got ID
		r.sum.Sum(got[:0])
		switch {
		case r.n != r.rawLen:
			r.err = &CorruptError{ID: r.want, Reason: fmt.Sprintf("decoded %d bytes, header says %d", r.n, r.rawLen)}
		case got != r.want:
			r.err = &CorruptError{ID: r.want, Reason: fmt.Sprintf("data hashes to %s", got)}
		default:
			r.err = io.EOF
		}
		return n, r.err
	case err != nil:
		r.err = &CorruptError{ID: r.want, Reason: fmt.Sprintf("zstd: %v", err)}
		return n, r.err
	}
	return n, nil
}

func (r *streamReader) Close() error {
	if r.close != nil {
		r.close()
		r.close = nil
	}
	return nil
}

var zeroPage [64 << 10]byte

// IsZero reports whether b holds only zero bytes. It runs at memory speed, so
// all-zero chunks can be skipped before hashing or compressing them.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
