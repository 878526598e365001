// Package dirstore implements store.Store on a local directory: each key is a
// file at the same relative path under the store's root.
//
// Put writes the object to a temporary file next to its final path, fsyncs it,
// renames it into place and fsyncs the directory, so a reader or a crash sees
// either the old object or the new one, never a partial write. Temporary files
// are named ".tmp-<random>"; List never yields them, and keys with an element
// starting with ".tmp-" are rejected as invalid. A crash can leave temporary
// files behind; they hold no committed data and may be removed at any time no
// Put is running.
//
// Errors wrap the store sentinels: a missing file store.ErrNotFound, ENOSPC
// and EDQUOT store.ErrNoSpace, EACCES and EPERM store.ErrAccessDenied, and
// errors that may pass (EIO, ETIMEDOUT, ESTALE and the other failures of a
// network file system, EAGAIN, ENOMEM, EMFILE) store.ErrUnavailable.
//
// Files are created with mode 0600 and directories with mode 0700: a
// repository holds backup data and is private to its owner.
package dirstore
