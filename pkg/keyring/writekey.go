package keyring

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// writeKeyHeader is the first line of a write key file.
const writeKeyHeader = "bulkbackup-write-key v1"

// MaxSecretFileSize bounds the files LoadWriteKeyFile, LoadIdentityFile and
// ReadPasswordFile read.
const MaxSecretFileSize = 64 << 10

// writeKeyJSON is the JSON of a write key file's second line
// (docs/encryption.md, section 6).
type writeKeyJSON struct {
	Repository string `json:"repository"`
	ID         string `json:"id"`
	Meta       string `json:"meta,omitempty"`
	Public     string `json:"public"`
}

var b64 = base64.StdEncoding.Strict()

// Marshal returns the key in the write key file format: the line
// "bulkbackup-write-key v1", then one line of base64 JSON. The result is a
// secret: whoever holds it can add data to the repository (docs/security.md).
func (k *WriteKey) Marshal() ([]byte, error) {
	if err := k.validate(); err != nil {
		return nil, fmt.Errorf("keyring: marshal write key: %v", err)
	}
	j := writeKeyJSON{
		Repository: k.Repository,
		ID:         b64.EncodeToString(k.ID[:]),
		Public:     b64.EncodeToString(k.Public.Bytes()),
	}
	if k.Meta != nil {
		j.Meta = b64.EncodeToString(k.Meta[:])
	}
	body, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("keyring: marshal write key: %w", err)
	}
	out := make([]byte, 0, len(writeKeyHeader)+2+b64.EncodedLen(len(body)))
	out = append(append(out, writeKeyHeader...), '\n')
	out = b64.AppendEncode(out, body)
	return append(out, '\n'), nil
}

// ParseWriteKey parses a write key file's content. The final newline is
// optional; nothing else may differ from what Marshal writes. It returns an
// error wrapping ErrDamaged for anything else, without quoting the input
// (which holds secrets).
func ParseWriteKey(data []byte) (*WriteKey, error) {
	k, err := parseWriteKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: write key: %v", ErrDamaged, err)
	}
	return k, nil
}

func parseWriteKey(data []byte) (*WriteKey, error) {
	if len(data) > MaxSecretFileSize {
		return nil, fmt.Errorf("%d bytes is too long", len(data))
	}
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || string(first) != writeKeyHeader {
		return nil, fmt.Errorf("the first line is not %q", writeKeyHeader)
	}
	line, rest, _ := bytes.Cut(rest, []byte("\n"))
	if len(rest) != 0 {
		return nil, errors.New("more than two lines")
	}
	body, err := b64.AppendDecode(nil, line)
	if err != nil {
		return nil, errors.New("the second line is not base64")
	}
	var j writeKeyJSON
	if err := decodeStrict(body, &j); err != nil {
		return nil, err
	}
	k := &WriteKey{Repository: j.Repository}
	if err := decodeKey(&k.ID, j.ID, "id"); err != nil {
		return nil, err
	}
	if j.Meta != "" {
		k.Meta = new([KeySize]byte)
		if err := decodeKey(k.Meta, j.Meta, "meta"); err != nil {
			return nil, err
		}
	}
	var pub [KeySize]byte
	if err := decodeKey(&pub, j.Public, "public"); err != nil {
		return nil, err
	}
	if k.Public, err = ecdh.X25519().NewPublicKey(pub[:]); err != nil {
		return nil, err
	}
	if err := k.validate(); err != nil {
		return nil, err
	}
	return k, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("json: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("json: data after the object")
	}
	return nil
}

// decodeKey decodes the base64 of a 32-byte key into dst.
func decodeKey(dst *[KeySize]byte, s, field string) error {
	b, err := b64.DecodeString(s)
	if err != nil || len(b) != KeySize {
		return fmt.Errorf("%s: not the base64 of %d bytes", field, KeySize)
	}
	*dst = [KeySize]byte(b)
	return nil
}

// LoadWriteKeyFile reads and parses a write key file (BULK_WRITE_KEY_FILE).
// Like ssh with a private key, it refuses a file that users other than its
// owner may read or write (ErrInsecureFile).
func LoadWriteKeyFile(path string) (*WriteKey, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseWriteKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPasswordFile reads a password from a file (BULK_PASSWORD_FILE),
// without its final newline ("\n" or "\r\n"). It refuses a file that
// others may access (ErrInsecureFile) and an empty password.
func ReadPasswordFile(path string) ([]byte, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return nil, fmt.Errorf("keyring: %s: empty password", path)
	}
	return data, nil
}

// readSecretFile reads a regular file of at most MaxSecretFileSize bytes
// that only its owner may access.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("keyring: %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("%w: %s has mode %04o; it must not be accessible by group or others (chmod 600 %s)",
			ErrInsecureFile, path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSecretFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if len(data) > MaxSecretFileSize {
		return nil, fmt.Errorf("keyring: %s is longer than %d bytes", path, MaxSecretFileSize)
	}
	return data, nil
}
