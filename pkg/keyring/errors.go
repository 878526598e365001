package keyring

import "errors"

// Errors callers branch on. Each error this package returns wraps at most
// one of them, with a message naming what was wrong.
var (
	// ErrAuth is wrapped when a sealed object does not authenticate: it was
	// sealed under another key, or some byte of it (ciphertext, tag, nonce,
	// ephemeral key, or the additional data) was changed.
	ErrAuth = errors.New("keyring: authentication failed (wrong key or tampered data)")

	// ErrNoKey is wrapped by Unwrap and UnwrapForJob when none of the given
	// passwords or identities opens the object.
	ErrNoKey = errors.New("keyring: none of the repository's keys opens with this password or these identities")

	// ErrDamaged is wrapped when a key object, write key or grant is
	// malformed: it cannot be parsed, or a password or identity opened it
	// and its contents then failed to authenticate or made no sense.
	ErrDamaged = errors.New("keyring: damaged key material")

	// ErrWrongRepository is wrapped when key material belongs to another
	// repository than the one it is used with.
	ErrWrongRepository = errors.New("keyring: key of another repository")

	// ErrNoMeta is wrapped when a write key without metadata ability
	// (WithoutMeta) is asked to seal or open metadata.
	ErrNoMeta = errors.New("keyring: this key has no metadata ability")

	// ErrWrongJob is wrapped by UnwrapForJob when the grant is for another
	// job, and by Grant.Open for an object the grant does not cover.
	ErrWrongJob = errors.New("keyring: grant does not cover this")

	// ErrExpired is wrapped by UnwrapForJob when the grant has expired.
	ErrExpired = errors.New("keyring: grant expired")

	// ErrInsecureFile is wrapped when a secret file can be read by users
	// other than its owner.
	ErrInsecureFile = errors.New("keyring: secret file is accessible by others")
)
