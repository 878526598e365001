package keyring

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
)

// MaxGrantSize bounds the payload of a wrapped grant: about 2.8 million
// objects, more than a manifest of the largest size (256 MiB) can name.
const MaxGrantSize = 256 << 20

// grantVersion is the version of the grant payload schema.
const grantVersion = 1

// grantRecordSize is the size of one object in a grant: ID || object key.
const grantRecordSize = 2 * KeySize

// grantRef names one object: its session and its ID.
type grantRef struct {
	ephemeral [EphemeralSize]byte
	id        [KeySize]byte
}

// Grant is the decryption ability of one restore or verify job: the keys
// of exactly the content objects the job reads, each usable for that
// object only. The restore client, which holds the repository's private
// key, builds it (NewGrant, Add) and wraps it to the target host's age
// recipient (WrapForJob); the host unwraps it with its own identity
// (UnwrapForJob) and opens objects with it. A Grant is built by one
// goroutine; once built, Open is safe for concurrent use.
type Grant struct {
	Repository string
	Job        string
	// Snapshot is informational: the snapshot the job reads.
	Snapshot string
	// Expires is when an honest host stops using the grant. It limits
	// mistakes, not a thief: the keys open their objects forever.
	Expires time.Time

	keys map[grantRef][KeySize]byte
}

// NewGrant returns an empty grant of job in repository.
func NewGrant(repository, job, snapshot string, expires time.Time) *Grant {
	return &Grant{Repository: repository, Job: job, Snapshot: snapshot, Expires: expires, keys: make(map[grantRef][KeySize]byte)}
}

// Add adds the object whose ID is id, sealed in the session of ephemeral
// (both read from the object's header or recorded in the manifest), with
// its key derived by o.
func (g *Grant) Add(o *Opener, ephemeral [EphemeralSize]byte, id [KeySize]byte) error {
	k, err := o.ObjectKey(ephemeral, id)
	if err != nil {
		return fmt.Errorf("keyring: grant object %x: %w", id, err)
	}
	g.keys[grantRef{ephemeral, id}] = k
	return nil
}

// Len returns the number of objects the grant covers.
func (g *Grant) Len() int { return len(g.keys) }

// Open is Opener.Open for an object the grant covers. It returns an error
// wrapping ErrWrongJob for an object it does not cover, ErrAuth for one
// that does not authenticate.
func (g *Grant) Open(dst []byte, ephemeral [EphemeralSize]byte, id [KeySize]byte, nonce [NonceSize]byte, ciphertext, aad []byte) ([]byte, error) {
	k, ok := g.keys[grantRef{ephemeral, id}]
	if !ok {
		return dst, fmt.Errorf("%w: object %x of session %x is not in the grant of job %q", ErrWrongJob, id, ephemeral, g.Job)
	}
	return openObject(dst, k, nonce, ciphertext, aad)
}

// grantJSON is a grant's payload (docs/encryption.md, section 8).
type grantJSON struct {
	Version    int           `json:"version"`
	Repository string        `json:"repository"`
	Job        string        `json:"job"`
	Snapshot   string        `json:"snapshot,omitempty"`
	Expires    time.Time     `json:"expires"`
	Sessions   []grantRecord `json:"sessions"`
}

type grantRecord struct {
	Ephemeral string `json:"ephemeral"`
	Objects   string `json:"objects"`
}

// WrapForJob encrypts g to recipients (the target hosts' age recipients)
// as a binary age file. The grant needs a repository, a job and an expiry.
func WrapForJob(g *Grant, recipients ...age.Recipient) ([]byte, error) {
	switch {
	case g.Repository == "" || g.Job == "":
		return nil, errors.New("keyring: wrap grant: empty repository or job")
	case g.Expires.IsZero():
		return nil, errors.New("keyring: wrap grant: no expiry")
	case len(recipients) == 0:
		return nil, errors.New("keyring: wrap grant: no recipients")
	}
	bySession := make(map[[EphemeralSize]byte][]byte)
	for ref, k := range g.keys {
		rec := bySession[ref.ephemeral]
		rec = append(append(rec, ref.id[:]...), k[:]...)
		bySession[ref.ephemeral] = rec
	}
	j := grantJSON{Version: grantVersion, Repository: g.Repository, Job: g.Job, Snapshot: g.Snapshot, Expires: g.Expires.UTC()}
	for _, eph := range slices.SortedFunc(maps.Keys(bySession), func(a, b [EphemeralSize]byte) int { return bytes.Compare(a[:], b[:]) }) {
		recs := bySession[eph]
		sortRecords(recs)
		j.Sessions = append(j.Sessions, grantRecord{Ephemeral: b64.EncodeToString(eph[:]), Objects: b64.EncodeToString(recs)})
	}
	payload, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("keyring: wrap grant: %w", err)
	}
	if len(payload) > MaxGrantSize {
		return nil, fmt.Errorf("keyring: wrap grant: %d objects make %d bytes, more than %d: split the job's grant", g.Len(), len(payload), MaxGrantSize)
	}
	out, err := ageEncrypt(payload, recipients...)
	if err != nil {
		return nil, fmt.Errorf("keyring: wrap grant: %w", err)
	}
	return out, nil
}

// sortRecords sorts 64-byte records by ID, so that a grant's encoding is
// deterministic.
func sortRecords(recs []byte) {
	n := len(recs) / grantRecordSize
	rs := make([][grantRecordSize]byte, n)
	for i := range rs {
		rs[i] = [grantRecordSize]byte(recs[i*grantRecordSize:])
	}
	slices.SortFunc(rs, func(a, b [grantRecordSize]byte) int { return bytes.Compare(a[:KeySize], b[:KeySize]) })
	for i := range rs {
		copy(recs[i*grantRecordSize:], rs[i][:])
	}
}

// UnwrapForJob decrypts a grant with the host's identities and checks that
// it is for job in repository and has not expired at now. It returns an
// error wrapping ErrNoKey when no identity opens it, ErrWrongRepository,
// ErrWrongJob or ErrExpired when it is not for this use, and ErrDamaged
// when it is malformed.
func UnwrapForJob(data []byte, repository, job string, now time.Time, ids ...age.Identity) (*Grant, error) {
	if len(data) > MaxGrantSize+MaxGrantSize/32 { // age's payload overhead is 16 bytes per 64 KiB, plus the header
		return nil, fmt.Errorf("%w: grant of %d bytes is too large", ErrDamaged, len(data))
	}
	payload, err := ageDecrypt(data, MaxGrantSize, ids...)
	if err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	var j grantJSON
	if err := decodeStrict(payload, &j); err != nil {
		return nil, fmt.Errorf("%w: grant: %v", ErrDamaged, err)
	}
	switch {
	case j.Version != grantVersion:
		return nil, fmt.Errorf("%w: grant version %d is not supported", ErrDamaged, j.Version)
	case j.Repository != repository:
		return nil, fmt.Errorf("%w: the grant is for repository %q, not %q", ErrWrongRepository, j.Repository, repository)
	case j.Job != job:
		return nil, fmt.Errorf("%w: the grant is for job %q, not %q", ErrWrongJob, j.Job, job)
	case j.Expires.IsZero():
		return nil, fmt.Errorf("%w: grant without expiry", ErrDamaged)
	case !now.Before(j.Expires):
		return nil, fmt.Errorf("%w: the grant of job %q expired at %s", ErrExpired, j.Job, j.Expires.Format(time.RFC3339))
	}
	g := NewGrant(j.Repository, j.Job, j.Snapshot, j.Expires)
	for i, s := range j.Sessions {
		var eph [EphemeralSize]byte
		if err := decodeKey(&eph, s.Ephemeral, "ephemeral"); err != nil {
			return nil, fmt.Errorf("%w: grant session %d: %v", ErrDamaged, i, err)
		}
		recs, err := b64.DecodeString(s.Objects)
		if err != nil || len(recs)%grantRecordSize != 0 {
			return nil, fmt.Errorf("%w: grant session %d: objects are not the base64 of %d-byte records", ErrDamaged, i, grantRecordSize)
		}
		for r := 0; r < len(recs); r += grantRecordSize {
			ref := grantRef{ephemeral: eph, id: [KeySize]byte(recs[r:])}
			if _, dup := g.keys[ref]; dup {
				return nil, fmt.Errorf("%w: grant session %d names object %x twice", ErrDamaged, i, ref.id)
			}
			g.keys[ref] = [KeySize]byte(recs[r+KeySize:])
		}
	}
	return g, nil
}

// LoadOrCreateHostIdentity returns the age X25519 identity of this host,
// kept in the file at path: read when it exists (refusing a file others may
// access, ErrInsecureFile), otherwise generated and written there with
// mode 0600, whole or not at all. Its Recipient is what the host announces,
// and what restore clients wrap grants to.
func LoadOrCreateHostIdentity(path string) (*age.X25519Identity, error) {
	id, err := loadHostIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	id, err = age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("keyring: host identity: %w", err)
	}
	content := fmt.Sprintf("# bulkbackup host identity, created %s\n# public key: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if err := createWhole(path, []byte(content)); errors.Is(err, fs.ErrExist) {
		return loadHostIdentity(path) // another process created it first
	} else if err != nil {
		return nil, fmt.Errorf("keyring: host identity: %w", err)
	}
	return id, nil
}

func loadHostIdentity(path string) (*age.X25519Identity, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("keyring: host identity %s: %v", path, err)
	}
	id, ok := ids[0].(*age.X25519Identity)
	if len(ids) != 1 || !ok {
		return nil, fmt.Errorf("keyring: host identity %s: want one AGE-SECRET-KEY-1 line", path)
	}
	return id, nil
}

// createWhole creates path holding data, mode 0600, failing with
// fs.ErrExist when it exists: it writes a temporary file beside it, fsyncs
// it and links it into place, so that a crash leaves no partial file.
func createWhole(path string, data []byte) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+strings.TrimPrefix(filepath.Base(path), ".")+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
