package s3store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	sentinels := []error{store.ErrNotFound, store.ErrAccessDenied, store.ErrNoSpace, store.ErrUnavailable}
	resp := func(code string, status int) error {
		return minio.ErrorResponse{Code: code, StatusCode: status, Message: code}
	}
	// request is how an HTTP round trip that got no answer fails.
	request := func(err error) error {
		return &url.Error{Op: "Put", URL: "http://127.0.0.1:9/b/k", Err: err}
	}
	dial := func(errno syscall.Errno) error {
		return request(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)})
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name      string
		err       error
		cancelled bool  // the caller's context has ended
		wantErr   error // the one sentinel it wraps; nil for none
	}{
		{"no such key", resp(minio.NoSuchKey, 404), false, store.ErrNotFound},
		{"access denied", resp(minio.AccessDenied, 403), false, store.ErrAccessDenied},
		{"storage full", resp("XMinioStorageFull", 507), false, store.ErrNoSpace},
		{"insufficient storage", resp("SomethingElse", 507), false, store.ErrNoSpace},
		{"slow down", resp("SlowDown", 503), false, store.ErrUnavailable},
		{"service unavailable", resp("ServiceUnavailable", 503), false, store.ErrUnavailable},
		{"internal error", resp("InternalError", 500), false, store.ErrUnavailable},
		{"request timeout", resp("RequestTimeout", 400), false, store.ErrUnavailable},
		{"server not initialized", resp("XMinioServerNotInitialized", 503), false, store.ErrUnavailable},
		{"bad gateway", resp("BadGateway", 502), false, store.ErrUnavailable},
		{"gateway timeout", resp("", 504), false, store.ErrUnavailable},
		{"too many requests", resp("", 429), false, store.ErrUnavailable},
		{"not implemented", resp("NotImplemented", 501), false, nil},
		{"bad request", resp("InvalidArgument", 400), false, nil},
		{"wrapped response", fmt.Errorf("put k: %w", resp("SlowDown", 503)), false, store.ErrUnavailable},
		{"connection refused", dial(syscall.ECONNREFUSED), false, store.ErrUnavailable},
		{"connection reset", request(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), false, store.ErrUnavailable},
		{"broken pipe", request(os.NewSyscallError("write", syscall.EPIPE)), false, store.ErrUnavailable},
		{"server hung up", request(io.EOF), false, store.ErrUnavailable},
		{"body cut short", io.ErrUnexpectedEOF, false, store.ErrUnavailable},
		{"dial timeout", request(&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}), false, store.ErrUnavailable},
		{"inner deadline", request(context.DeadlineExceeded), false, store.ErrUnavailable},
		{"name lookup failing", request(&net.DNSError{Err: "server misbehaving", Name: "s3", IsTemporary: true}), false, store.ErrUnavailable},
		{"no such host", request(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "s3", IsNotFound: true}}), false, nil},
		{"unknown authority", request(x509.UnknownAuthorityError{}), false, nil},
		{"wrong host name", request(&tls.CertificateVerificationError{Err: x509.HostnameError{Host: "s3"}}), false, nil},
		{"https to an http server", request(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), false, nil},
		{"unsupported scheme", request(errors.New(`unsupported protocol scheme "ftp"`)), false, nil},
		{"cancelled", request(context.Canceled), true, nil},
		{"refused after the caller's cancel", dial(syscall.ECONNREFUSED), true, nil},
		{"caller's deadline", request(context.DeadlineExceeded), true, nil},
		{"plain error", errors.New("boom"), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.cancelled {
				ctx = cancelled
			}
			got := classify(ctx, tt.err)
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
	if err := classify(t.Context(), nil); err != nil {
		t.Errorf("classify(nil) = %v, want nil", err)
	}
}
