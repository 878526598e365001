// Package keyring is the cryptographic core of encrypted repositories: the
// keys, how they are wrapped for storage and for the fleet, and the ciphers
// of stored objects. It does no repository I/O; docs/encryption.md specifies
// every byte so that an independent decoder can be written, and
// docs/security.md says what each party can and cannot do.
//
// A repository has four secrets (Keys): the ID root, from which the MAC key
// of chunk IDs and the staging keys are derived; the Meta root, from which
// the keys of the metadata the writing side reads back (snapshot headers,
// incremental indexes) are derived; and an X25519 key pair. Content objects
// (chunks, manifests) are encrypted to the public key, so the fleet of
// readers, compressors and the coordinator, which hold only a WriteKey (the
// roots and the public key, never the private key), can add data but not
// read it. The coordinator's WriteKey has the metadata root (it writes and
// reads manifests); the readers' and compressors' have none (WithoutMeta).
//
// Content objects are sealed by a Sealer: one ephemeral X25519 key per
// writer session, one ECDH per session, then per object a key derived from
// the session key and the object's ID, and AES-256-GCM with a random nonce.
// Deriving per object lets a restore client hand a restore job the keys of
// exactly the objects it reads (a Grant, wrapped to the target host's age
// identity by WrapForJob) instead of the private key.
//
// The Keys are stored in the repository wrapped by a password (age's scrypt
// recipient) or to age identities (WrapPassword, WrapRecipients, Unwrap).
//
// Secrets never print: Keys and WriteKey format and log as their repository
// ID only, and refuse to be marshalled as JSON by accident.
package keyring
