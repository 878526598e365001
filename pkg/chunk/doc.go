// Package chunk defines a chunk's identity and its stored form.
//
// A chunk's ID is the SHA-256 of its raw bytes. Seal turns raw bytes into the
// object written to a repository: a small versioned header (magic, format
// version, compression, encryption, hash algorithm, raw length, hash) followed
// by the payload, zstd-compressed unless compression would not make it
// smaller. Open reverses Seal and checks the result against the hash, so
// corruption is always reported, never returned as data. The package does no
// I/O; docs/format.md specifies the layout byte for byte.
package chunk
