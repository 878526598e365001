package keyring

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"
)

// Kinds of key objects.
const (
	// KindPassword is a key object wrapped by a password.
	KindPassword = "password"
	// KindAge is a key object wrapped to age recipients.
	KindAge = "age"
)

// Password work factors: scrypt's N is 2^workFactor (memory 2^workFactor
// KiB).
const (
	// DefaultWorkFactor is the work factor age recommends: about a second
	// and 256 MiB.
	DefaultWorkFactor = 18
	// MaxWorkFactor is the highest work factor WrapPassword writes and
	// Unwrap accepts (1 GiB of memory): a key object planted in a bucket
	// cannot make a restore client allocate more.
	MaxWorkFactor = 20
)

// MaxKeyObjectSize bounds a key object's size.
const MaxKeyObjectSize = 1 << 20

// keyObjectVersion is the version of the key object and payload schemas.
const keyObjectVersion = 1

// KeyInfo is the plaintext metadata of a key object, readable without
// opening it (bulkctl key list). Only ID and Repository are authenticated,
// by Unwrap; the other fields are informational, and anyone who can write
// to the bucket can change them.
type KeyInfo struct {
	// ID names the key object: it is stored under keys/<ID>. 32 lowercase
	// hex digits.
	ID         string
	Repository string
	Created    time.Time
	Label      string
	// Kind is KindPassword or KindAge.
	Kind string
	// Recipients are, for KindAge, the recipients the keys were wrapped
	// to, as their String methods print them.
	Recipients []string
}

// keyObjectJSON is a key object (docs/encryption.md, section 7).
type keyObjectJSON struct {
	Version    int       `json:"version"`
	ID         string    `json:"id"`
	Repository string    `json:"repository"`
	Created    time.Time `json:"created"`
	Label      string    `json:"label,omitempty"`
	Kind       string    `json:"kind"`
	Recipients []string  `json:"recipients,omitempty"`
	Data       string    `json:"data"`
}

// keysPayload is the age-encrypted payload of a key object.
type keysPayload struct {
	Version    int    `json:"version"`
	Repository string `json:"repository"`
	Key        string `json:"key"`
	ID         string `json:"id"`
	Meta       string `json:"meta"`
	Private    string `json:"private"`
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// WrapPassword returns a key object holding k, openable with password
// (age's scrypt recipient), and its metadata. workFactor is scrypt's log2 N:
// 0 means DefaultWorkFactor, and it may not exceed MaxWorkFactor.
func WrapPassword(k *Keys, password []byte, label string, workFactor int) (KeyInfo, []byte, error) {
	if workFactor == 0 {
		workFactor = DefaultWorkFactor
	}
	if workFactor < 1 || workFactor > MaxWorkFactor {
		return KeyInfo{}, nil, fmt.Errorf("keyring: wrap with password: work factor %d is not in [1, %d]", workFactor, MaxWorkFactor)
	}
	r, err := age.NewScryptRecipient(string(password))
	if err != nil {
		return KeyInfo{}, nil, fmt.Errorf("keyring: wrap with password: %v", err)
	}
	r.SetWorkFactor(workFactor)
	return wrap(k, KindPassword, label, nil, r)
}

// WrapRecipients returns a key object holding k, openable with the
// identity of any of recipients (age X25519 or hybrid recipients, or SSH
// keys; see ParseRecipient), and its metadata.
func WrapRecipients(k *Keys, recipients []age.Recipient, label string) (KeyInfo, []byte, error) {
	if len(recipients) == 0 {
		return KeyInfo{}, nil, errors.New("keyring: wrap to recipients: no recipients")
	}
	var names []string
	for _, r := range recipients {
		if _, ok := r.(*age.ScryptRecipient); ok {
			return KeyInfo{}, nil, errors.New("keyring: wrap to recipients: use WrapPassword for a password")
		}
		if s, ok := r.(fmt.Stringer); ok {
			names = append(names, s.String())
		}
	}
	return wrap(k, KindAge, label, names, recipients...)
}

func wrap(k *Keys, kind, label string, names []string, recipients ...age.Recipient) (KeyInfo, []byte, error) {
	if err := k.validate(); err != nil {
		return KeyInfo{}, nil, fmt.Errorf("keyring: wrap keys: %v", err)
	}
	var id [16]byte
	rand.Read(id[:])
	info := KeyInfo{
		ID:         hex.EncodeToString(id[:]),
		Repository: k.Repository,
		Created:    time.Now().UTC().Truncate(time.Second),
		Label:      label,
		Kind:       kind,
		Recipients: names,
	}
	payload, err := json.Marshal(keysPayload{
		Version:    keyObjectVersion,
		Repository: k.Repository,
		Key:        info.ID,
		ID:         b64.EncodeToString(k.ID[:]),
		Meta:       b64.EncodeToString(k.Meta[:]),
		Private:    b64.EncodeToString(k.Private.Bytes()),
	})
	if err != nil {
		return KeyInfo{}, nil, fmt.Errorf("keyring: wrap keys: %w", err)
	}
	data, err := ageEncrypt(payload, recipients...)
	if err != nil {
		return KeyInfo{}, nil, fmt.Errorf("keyring: wrap keys: %w", err)
	}
	obj, err := json.Marshal(keyObjectJSON{
		Version:    keyObjectVersion,
		ID:         info.ID,
		Repository: info.Repository,
		Created:    info.Created,
		Label:      info.Label,
		Kind:       info.Kind,
		Recipients: info.Recipients,
		Data:       b64.EncodeToString(data),
	})
	if err != nil {
		return KeyInfo{}, nil, fmt.Errorf("keyring: wrap keys: %w", err)
	}
	return info, obj, nil
}

// validate checks that k is whole: a fleet-wide write key and the private
// key of its public key.
func (k *Keys) validate() error {
	switch {
	case k.Private == nil || k.Private.Curve() != ecdh.X25519():
		return errors.New("no X25519 private key")
	case k.Public == nil || !k.Private.PublicKey().Equal(k.Public):
		return errors.New("the public key is not the private key's")
	case k.Meta == nil:
		return errors.New("without the metadata root")
	}
	return k.WriteKey.validate()
}

// ageEncrypt encrypts plaintext to recipients as a binary age file.
func ageEncrypt(plaintext []byte, recipients ...age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ageDecrypt decrypts an age file of at most limit plaintext bytes. It
// returns an error wrapping ErrNoKey when no identity matches, ErrDamaged
// otherwise.
func ageDecrypt(data []byte, limit int64, ids ...age.Identity) ([]byte, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no password or identity given", ErrNoKey)
	}
	rd, err := age.Decrypt(bytes.NewReader(data), ids...)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return nil, fmt.Errorf("%w: %v", ErrNoKey, err)
		}
		return nil, fmt.Errorf("%w: age: %v", ErrDamaged, err)
	}
	out, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: age payload: %v", ErrDamaged, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%w: age payload longer than %d bytes", ErrDamaged, limit)
	}
	return out, nil
}

// ParseKeyInfo returns the metadata of a key object without opening it. It
// returns an error wrapping ErrDamaged for an object that is not one.
func ParseKeyInfo(obj []byte) (KeyInfo, error) {
	j, err := parseKeyObject(obj)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("%w: key object: %v", ErrDamaged, err)
	}
	return KeyInfo{ID: j.ID, Repository: j.Repository, Created: j.Created, Label: j.Label, Kind: j.Kind, Recipients: j.Recipients}, nil
}

func parseKeyObject(obj []byte) (*keyObjectJSON, error) {
	if len(obj) > MaxKeyObjectSize {
		return nil, fmt.Errorf("%d bytes is more than %d", len(obj), MaxKeyObjectSize)
	}
	var j keyObjectJSON
	if err := json.Unmarshal(obj, &j); err != nil { // unknown fields are ignored: they are informational
		return nil, fmt.Errorf("json: %v", err)
	}
	switch {
	case j.Version != keyObjectVersion:
		return nil, fmt.Errorf("version %d is not supported", j.Version)
	case !keyIDPattern.MatchString(j.ID):
		return nil, errors.New("id is not 32 lowercase hex digits")
	case j.Repository == "":
		return nil, errors.New("empty repository")
	case j.Kind != KindPassword && j.Kind != KindAge:
		return nil, fmt.Errorf("unknown kind %q", j.Kind)
	case j.Data == "":
		return nil, errors.New("no data")
	}
	return &j, nil
}

// Unwrap opens a key object with passwords (PasswordIdentity) or age
// identities and returns the repository's keys. It returns an error
// wrapping ErrNoKey when none of ids opens it, and ErrDamaged when the
// object is malformed or its payload does not authenticate or make sense.
// (A changed password stanza cannot be told from a wrong password: it
// reports ErrNoKey.) The caller checks the keys' Repository against the
// repository's config (CheckRepository).
func Unwrap(obj []byte, ids ...age.Identity) (*Keys, error) {
	j, err := parseKeyObject(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: key object: %v", ErrDamaged, err)
	}
	data, err := b64.DecodeString(j.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: key object %s: data is not base64", ErrDamaged, j.ID)
	}
	payload, err := ageDecrypt(data, MaxKeyObjectSize, ids...)
	if err != nil {
		return nil, fmt.Errorf("key object %s: %w", j.ID, err)
	}
	k, err := parseKeysPayload(payload, j)
	if err != nil {
		return nil, fmt.Errorf("%w: key object %s: %v", ErrDamaged, j.ID, err)
	}
	return k, nil
}

func parseKeysPayload(payload []byte, j *keyObjectJSON) (*Keys, error) {
	var p keysPayload
	if err := decodeStrict(payload, &p); err != nil {
		return nil, err
	}
	switch {
	case p.Version != keyObjectVersion:
		return nil, fmt.Errorf("payload version %d is not supported", p.Version)
	case p.Repository != j.Repository:
		return nil, fmt.Errorf("payload is for repository %q, the object says %q", p.Repository, j.Repository)
	case p.Key != j.ID:
		return nil, fmt.Errorf("payload is for key object %q", p.Key)
	}
	k := &Keys{WriteKey: WriteKey{Repository: p.Repository, Meta: new([KeySize]byte)}}
	if err := decodeKey(&k.ID, p.ID, "id"); err != nil {
		return nil, err
	}
	if err := decodeKey(k.Meta, p.Meta, "meta"); err != nil {
		return nil, err
	}
	var priv [KeySize]byte
	if err := decodeKey(&priv, p.Private, "private"); err != nil {
		return nil, err
	}
	var err error
	if k.Private, err = ecdh.X25519().NewPrivateKey(priv[:]); err != nil {
		return nil, err
	}
	k.Public = k.Private.PublicKey()
	if err := k.validate(); err != nil {
		return nil, err
	}
	return k, nil
}

// PasswordIdentity returns the identity that opens key objects wrapped by
// password, accepting work factors up to MaxWorkFactor.
func PasswordIdentity(password []byte) (age.Identity, error) {
	return passwordIdentity(password, MaxWorkFactor)
}

func passwordIdentity(password []byte, maxWorkFactor int) (age.Identity, error) {
	id, err := age.NewScryptIdentity(string(password))
	if err != nil {
		return nil, fmt.Errorf("keyring: password: %v", err)
	}
	id.SetMaxWorkFactor(maxWorkFactor)
	return id, nil
}

// namedRecipient is an SSH recipient that prints as it was given.
type namedRecipient struct {
	age.Recipient
	name string
}

func (r namedRecipient) String() string { return r.name }

// ParseRecipient parses a recipient to wrap keys to: an age X25519
// recipient (age1…), an age hybrid post-quantum recipient (age1pq1…), or
// an SSH public key line (ssh-ed25519 or ssh-rsa, as in authorized_keys).
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	var (
		r   age.Recipient
		err error
	)
	switch {
	case strings.HasPrefix(s, "age1pq1"):
		r, err = age.ParseHybridRecipient(s)
	case strings.HasPrefix(s, "age1"):
		r, err = age.ParseX25519Recipient(s)
	case strings.HasPrefix(s, "ssh-ed25519 "), strings.HasPrefix(s, "ssh-rsa "):
		r, err = agessh.ParseRecipient(s)
		if err == nil {
			r = namedRecipient{r, s}
		}
	default:
		return nil, fmt.Errorf("keyring: recipient %q: want age1…, age1pq1…, ssh-ed25519 or ssh-rsa", s)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: recipient: %v", err)
	}
	return r, nil
}

// ParseIdentities parses identities that open key objects: an age identity
// file (AGE-SECRET-KEY-1… and AGE-SECRET-KEY-PQ-1… lines, # comments) or an
// unencrypted OpenSSH or PEM private key (ed25519 or RSA). Errors never
// quote the input.
func ParseIdentities(data []byte) ([]age.Identity, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			return nil, fmt.Errorf("keyring: ssh identity: %v (passphrase-protected SSH keys are not supported)", err)
		}
		return []age.Identity{id}, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("keyring: identities: %v", err)
	}
	return ids, nil
}

// LoadIdentityFile reads identities from a file (BULK_IDENTITY_FILE),
// refusing one that others may access (ErrInsecureFile).
func LoadIdentityFile(path string) ([]age.Identity, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	ids, err := ParseIdentities(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}
