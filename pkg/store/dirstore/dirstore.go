package dirstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

const (
	// tempPrefix starts the name of every temporary file Put writes.
	tempPrefix = ".tmp-"
	// tempDir, under the root, holds the temporary files of writes in
	// progress: in one place, so that what a crashed writer left is found
	// without walking the repository.
	tempDir = tempPrefix + "writes"
	// staleTemp is how old a temporary file must be for New to remove it
	// as a crashed writer's: far longer than any write takes.
	staleTemp = time.Hour
	// dirMode is the mode of the directories New and Put create.
	dirMode = 0o700
)

// Store is a store.Store on a local directory. It is safe for concurrent use.
type Store struct {
	root string // absolute and clean
}

var _ store.Store = (*Store)(nil)

// New returns a Store rooted at dir, creating dir and its parents if needed.
// The error names dir when it cannot be created or is not a directory.
func New(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve store directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(root, tempDir), dirMode); err != nil {
		return nil, fmt.Errorf("create store directory %s: %w", dir, classify(err))
	}
	s := &Store{root: root}
	s.removeStaleTemp(time.Now().Add(-staleTemp))
	return s, nil
}

// removeStaleTemp removes the temporary files of writes that began before
// cutoff: writers that crashed (or were killed) between creating and
// renaming them. It is best effort: a failure leaves them for next time.
func (s *Store) removeStaleTemp(cutoff time.Time) {
	dir := filepath.Join(s.root, tempDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Location returns the store's absolute root directory.
func (s *Store) Location() string { return s.root }

// Put atomically replaces the object under key with data and returns once
// both the file and its directory entry are on stable storage.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	path, err := s.path(key)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := s.writeFile(path, data); err != nil {
		return fmt.Errorf("put %s: %w", key, classify(err))
	}
	return nil
}

// Get returns the object under key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	path, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, classifyRead(err))
	}
	return data, nil
}

// Stat returns the size of the object under key.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	path, err := s.path(key)
	if err != nil {
		return store.Info{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, classifyRead(err))
	}
	if !fi.Mode().IsRegular() {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, store.ErrNotFound)
	}
	return store.Info{Key: key, Size: fi.Size()}, nil
}

// Peek returns the first n bytes of the object under key and its size.
func (s *Store) Peek(ctx context.Context, key string, n int) ([]byte, store.Info, error) {
	path, err := s.path(key)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("peek: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, classifyRead(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, classify(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, store.ErrNotFound)
	}
	buf := make([]byte, min(int64(n), fi.Size()))
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, classify(err))
	}
	return buf, store.Info{Key: key, Size: fi.Size()}, nil
}

// Delete removes the object under key. A missing key, or a key naming a
// directory, holds no object and is not an error. Empty directories are left
// in place.
func (s *Store) Delete(ctx context.Context, key string) error {
	path, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	fi, err := os.Lstat(path)
	switch {
	case isMissing(err):
		return nil
	case err != nil:
		return fmt.Errorf("delete %s: %w", key, classify(err))
	case fi.IsDir():
		return nil
	}
	if err := os.Remove(path); err != nil && !isMissing(err) {
		return fmt.Errorf("delete %s: %w", key, classify(err))
	}
	return nil
}

// List yields the regular files whose keys start with prefix, walking only
// the directories that can hold such keys. Temporary files are skipped. A
// prefix whose directory part is not a valid key yields an error wrapping
// store.ErrInvalidKey.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		dir, ok := prefixDir(prefix)
		if !ok {
			yield(store.Info{}, fmt.Errorf("list: %w %q", store.ErrInvalidKey, prefix))
			return
		}
		walk := func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if isMissing(err) {
					return nil // nothing stored there yet, or deleted while we walk
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			key := s.key(path)
			if d.IsDir() {
				if strings.HasPrefix(d.Name(), tempPrefix) || !canHold(key, prefix) {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tempPrefix) || !strings.HasPrefix(key, prefix) {
				return nil
			}
			fi, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while we walk
			}
			if err != nil {
				return err
			}
			if !yield(store.Info{Key: key, Size: fi.Size()}, nil) {
				return fs.SkipAll
			}
			return nil
		}
		if err := filepath.WalkDir(filepath.Join(s.root, filepath.FromSlash(dir)), walk); err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, classify(err)))
		}
	}
}

// writeFile replaces path with data atomically: it writes and fsyncs a
// temporary file in the store's temporary directory, renames it over path
// and fsyncs path's directory. Missing directories are created on demand.
func (s *Store) writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmpDir := filepath.Join(s.root, tempDir)
	f, err := os.CreateTemp(tmpDir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) { // removed since New
		if err := s.mkdirAll(tmpDir); err != nil {
			return err
		}
		f, err = os.CreateTemp(tmpDir, tempPrefix+"*")
	}
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := writeSyncClose(f, data); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	err = os.Rename(tmp, path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.mkdirAll(dir); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// mkdirAll creates dir and its missing parents, then fsyncs every directory
// from dir's parent up to the root so the new entries survive a crash.
func (s *Store) mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	for d := dir; d != s.root; d = filepath.Dir(d) {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// path returns the file holding key, or an error wrapping store.ErrInvalidKey.
func (s *Store) path(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("%w %q", store.ErrInvalidKey, key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// key returns the key of a path under the root; the root itself is "".
func (s *Store) key(path string) string {
	rel, err := filepath.Rel(s.root, path)
	if err != nil || rel == "." {
		return ""
	}
	return filepath.ToSlash(rel)
}

// validKey is store.ValidKey, also refusing keys that could be mistaken for
// temporary files.
func validKey(key string) bool {
	if !store.ValidKey(key) {
		return false
	}
	for elem := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(elem, tempPrefix) {
			return false
		}
	}
	return true
}

// prefixDir returns the deepest directory, as a key ("" for the root), that
// holds every key starting with prefix. It reports false when the part of
// prefix up to its last slash is not a valid key, so a listing cannot leave
// the store.
func prefixDir(prefix string) (string, bool) {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return "", true
	}
	dir := prefix[:i]
	return dir, validKey(dir)
}

// canHold reports whether the directory with key dir ("" for the root) can
// hold keys starting with prefix: dir lies inside the prefix ("chunks/ab" for
// "chunks/a") or the prefix continues below dir ("chunks" for "chunks/a").
func canHold(dir, prefix string) bool {
	return dir == "" || strings.HasPrefix(dir+"/", prefix) || strings.HasPrefix(prefix, dir+"/")
}

// writeSyncClose writes data to the empty file f, around the page cache
// where it can (nothing reads a chunk back soon after a backup wrote it),
// fsyncs and closes it.
func writeSyncClose(f *os.File, data []byte) error {
	err := directio.WriteFile(f, data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs a directory, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// classify wraps err with the store sentinel matching its cause, if any.
func classify(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", store.ErrNoSpace, err)
	case errors.Is(err, fs.ErrPermission): // EACCES and EPERM
		return fmt.Errorf("%w: %w", store.ErrAccessDenied, err)
	case mayPass(err):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// passingErrnos are the errors of a file system that may pass: a network
// file system whose server is down or unreachable (NFS and CIFS report EIO,
// ETIMEDOUT, ESTALE, EHOSTDOWN and the like; a dead FUSE mount ENOTCONN),
// and the kernel or the process short of memory or file descriptors for a
// moment. EIO on a local disk may be a failing disk that never recovers; it
// is retried all the same, and the error says what failed when the retrying
// gives up.
var passingErrnos = []syscall.Errno{
	syscall.EIO, syscall.EAGAIN, syscall.EINTR, syscall.ENOMEM, syscall.ENOBUFS,
	syscall.EMFILE, syscall.ENFILE, syscall.ETIMEDOUT, syscall.ESTALE, syscall.ENOTCONN,
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
	syscall.EHOSTDOWN, syscall.EHOSTUNREACH, syscall.ENETDOWN, syscall.ENETUNREACH,
}

// mayPass reports whether err is a file system error that may pass.
func mayPass(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && slices.Contains(passingErrnos, errno)
}

// classifyRead is classify for reads, where a missing file or a path running
// into or through something that is not a regular file means no object.
func classifyRead(err error) error {
	if isMissing(err) || errors.Is(err, syscall.EISDIR) {
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return classify(err)
}

// isMissing reports whether err means the path does not exist, including a
// parent element that is a file rather than a directory.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
