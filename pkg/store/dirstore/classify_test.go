package dirstore

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	sentinels := []error{store.ErrNotFound, store.ErrAccessDenied, store.ErrNoSpace, store.ErrUnavailable}
	pathErr := func(errno syscall.Errno) error { return &fs.PathError{Op: "open", Path: "/repo/k", Err: errno} }
	tests := []struct {
		name    string
		err     error
		read    bool  // through classifyRead
		wantErr error // the one sentinel it wraps; nil for none
	}{
		{"disk full", pathErr(syscall.ENOSPC), false, store.ErrNoSpace},
		{"quota", pathErr(syscall.EDQUOT), false, store.ErrNoSpace},
		{"permission", pathErr(syscall.EACCES), false, store.ErrAccessDenied},
		{"not permitted", pathErr(syscall.EPERM), false, store.ErrAccessDenied},
		{"missing on read", pathErr(syscall.ENOENT), true, store.ErrNotFound},
		{"directory on read", pathErr(syscall.EISDIR), true, store.ErrNotFound},
		{"I/O error", pathErr(syscall.EIO), false, store.ErrUnavailable},
		{"I/O error on read", pathErr(syscall.EIO), true, store.ErrUnavailable},
		{"try again", pathErr(syscall.EAGAIN), false, store.ErrUnavailable},
		{"out of memory", pathErr(syscall.ENOMEM), false, store.ErrUnavailable},
		{"too many open files", pathErr(syscall.EMFILE), false, store.ErrUnavailable},
		{"NFS server timed out", pathErr(syscall.ETIMEDOUT), false, store.ErrUnavailable},
		{"NFS stale handle", pathErr(syscall.ESTALE), true, store.ErrUnavailable},
		{"CIFS host down", pathErr(syscall.EHOSTDOWN), false, store.ErrUnavailable},
		{"FUSE mount gone", pathErr(syscall.ENOTCONN), false, store.ErrUnavailable},
		{"syscall error", os.NewSyscallError("fsync", syscall.EIO), false, store.ErrUnavailable},
		{"read-only file system", pathErr(syscall.EROFS), false, nil},
		{"invalid argument", pathErr(syscall.EINVAL), false, nil},
		{"short read", io.ErrUnexpectedEOF, false, nil},
		{"plain error", errors.New("boom"), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if tt.read {
				got = classifyRead(tt.err)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v, lost the cause", tt.err, got)
			}
			for _, s := range sentinels {
				if is, want := errors.Is(got, s), s == tt.wantErr; is != want {
					t.Errorf("classify(%v) = %v: errors.Is(%v) = %t, want %t", tt.err, got, s, is, want)
				}
			}
		})
	}
}
