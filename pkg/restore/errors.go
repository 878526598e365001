package restore

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// Permanent reports whether a restore step failed in a way that retrying
// cannot fix, so the job should fail at once, naming the cause: the data is
// damaged or missing from the repository, the repository refused the
// credentials, the target is in the way or unsafe, or the target's file
// system refused the write (full, read-only, not permitted, a name too
// long). Other failures (the repository unreachable, a cancelled context)
// are worth retrying.
func Permanent(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, target := range []error{
		chunk.ErrCorrupt, store.ErrNotFound, store.ErrAccessDenied, store.ErrInvalidKey,
		ErrExists, ErrUnsafePath, ErrNotDir, ErrNotFile, ErrNoRoom,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return false
	}
	// The errors a local file system gives for good; network errors (a
	// repository unreachable) are errnos too, and stay retried.
	switch errno {
	case unix.ENOSPC, unix.EDQUOT, unix.EFBIG, unix.EROFS, unix.EACCES, unix.EPERM,
		unix.ENOTDIR, unix.EISDIR, unix.ELOOP, unix.EEXIST, unix.ENAMETOOLONG, unix.EXDEV, unix.EMLINK, unix.ENOENT:
		return true
	}
	return false
}
