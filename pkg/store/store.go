// Package store defines the object storage a repository lives on: a flat
// namespace of keys holding immutable byte objects. Implementations are a local
// directory (dirstore) and an S3 bucket with a prefix (s3store); both pass the
// conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"iter"
)

// Sentinel errors every implementation maps its native errors onto, so callers
// branch with errors.Is and never on backend-specific codes.
var (
	// ErrNotFound means the key holds no object.
	ErrNotFound = errors.New("store: object not found")
	// ErrAccessDenied means the credentials were refused or lack permission.
	ErrAccessDenied = errors.New("store: access denied")
	// ErrNoSpace means the backing storage is full.
	ErrNoSpace = errors.New("store: no space left")
	// ErrInvalidKey means the key is empty, absolute or escapes the store.
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrUnavailable means the request failed for a reason that may pass:
	// the store unreachable, a timeout, a connection cut, a server error or
	// throttling. The same request may succeed later. Implementations wrap
	// only such failures with it, never the caller's cancelled context:
	// the retry decorator (package store/retry) retries these and nothing
	// else.
	ErrUnavailable = errors.New("store: unavailable")
)

// Info describes one stored object.
type Info struct {
	Key  string
	Size int64
}

// Store is a flat key/value object store. Keys are slash-separated relative
// paths ("chunks/ab/abcd..."). Objects are written whole: after Put returns nil
// the object is durable and a concurrent Get sees either the old or the new
// object, never a partial one. All methods are safe for concurrent use.
type Store interface {
	// Put stores data under key, replacing any object already there. It
	// returns only once the object is durably stored.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the object stored under key, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Stat returns the object's size, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Peek returns the first n bytes of the object under key (all of it
	// when it is shorter) and the whole object's size, from one request,
	// or an error wrapping ErrNotFound. It checks a large object's header
	// against its length without reading the object.
	Peek(ctx context.Context, key string, n int) ([]byte, Info, error)
	// List yields the objects whose keys start with prefix, in no particular
	// order. Iteration stops at the first error, which is yielded last.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]
	// Delete removes the object under key. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
	// Location names the store for humans and logs ("/srv/repo",
	// "s3://bucket/prefix").
	Location() string
}

// ValidKey reports whether key is a clean relative slash path that stays
// inside the store: not empty, not absolute, no "." or ".." elements, no empty
// elements and no backslashes.
func ValidKey(key string) bool {
	if key == "" || key[0] == '/' || key[len(key)-1] == '/' {
		return false
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] == '\\' {
			return false
		}
		if i == len(key) || key[i] == '/' {
			elem := key[start:i]
			if elem == "" || elem == "." || elem == ".." {
				return false
			}
			start = i + 1
		}
	}
	return true
}
