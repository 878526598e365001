package s3store

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// ErrNoBucket means the configured bucket does not exist and Config.CreateBucket
// is false.
var ErrNoBucket = errors.New("s3store: bucket does not exist")

// Config describes the bucket a Store lives in and how to reach it.
type Config struct {
	// Endpoint is the server's host and optional port, without a scheme:
	// "s3.eu-west-1.amazonaws.com", "127.0.0.1:9000".
	Endpoint string
	// AccessKey and SecretKey are the static credentials requests are signed
	// with; SessionToken is set only for temporary credentials.
	AccessKey, SecretKey, SessionToken string
	// Region is the bucket's region. Empty lets the client look it up.
	Region string
	// Bucket holds the store. Prefix, with surrounding slashes trimmed, is
	// prepended to every key; empty puts keys at the top of the bucket.
	Bucket, Prefix string
	// Secure selects https instead of plain http.
	Secure bool
	// CreateBucket makes New create Bucket when it does not exist, instead of
	// failing with ErrNoBucket.
	CreateBucket bool
}

// validate reports the first missing or malformed field.
func (c Config) validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("s3store: Endpoint is empty")
	case strings.Contains(c.Endpoint, "://"):
		return fmt.Errorf("s3store: Endpoint %q must be host[:port] without a scheme (set Secure for https)", c.Endpoint)
	case c.Bucket == "":
		return errors.New("s3store: Bucket is empty")
	}
	return nil
}

// Store is a store.Store on an S3 bucket. It is safe for concurrent use.
type Store struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
}

var _ store.Store = (*Store)(nil)

// New connects to cfg.Endpoint and checks that cfg.Bucket exists, creating it
// when cfg.CreateBucket is set. Refused credentials give an error wrapping
// store.ErrAccessDenied that names the endpoint; a missing bucket gives one
// wrapping ErrNoBucket that names the bucket.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure: cfg.Secure,
		Region: cfg.Region,
		// minio-go refuses a checksum header without it; putOptions sends
		// the CRC32C as a header, so no trailer is sent.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	s := &Store{client: client, bucket: cfg.Bucket}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	if err := s.ensureBucket(ctx, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureBucket checks that the bucket exists, creating it if cfg says so.
func (s *Store) ensureBucket(ctx context.Context, cfg Config) error {
	exists, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		err = classify(ctx, err)
		if errors.Is(err, store.ErrAccessDenied) {
			return fmt.Errorf("credentials refused for endpoint %s (bucket %s): %w", cfg.Endpoint, s.bucket, err)
		}
		return fmt.Errorf("check bucket %s at %s: %w", s.bucket, cfg.Endpoint, err)
	}
	if exists {
		return nil
	}
	if !cfg.CreateBucket {
		return fmt.Errorf("open bucket %s at %s: %w", s.bucket, cfg.Endpoint, ErrNoBucket)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: cfg.Region})
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code == minio.BucketAlreadyOwnedByYou {
		return nil // created concurrently by another client with our credentials
	}
	if err != nil {
		return fmt.Errorf("create bucket %s at %s: %w", s.bucket, cfg.Endpoint, classify(ctx, err))
	}
	return nil
}

// Location returns "s3://bucket/prefix".
func (s *Store) Location() string {
	return strings.TrimSuffix("s3://"+s.bucket+"/"+s.prefix, "/")
}

// putOptions returns the options of every upload. Objects are in memory
// (chunks of 1 to 32 MiB, metadata up to 256 MiB), so the choices favour one cheap request each:
//
//   - DisableMultipart: every object goes out as a single PUT (chunks are
//     at most 32 MiB, manifests 256 MiB; S3 takes up to 5 GiB so), which
//     the CRC32C header below covers whole. With minio-go's 16 MiB default
//     a 17 MiB chunk became a four-request multipart upload.
//   - DisableContentSha256: over plain http minio-go otherwise signs the body
//     with streaming SigV4, a SHA-256 over every 64 KiB on the client and
//     again on the server. Chunk keys are already hashes of the content,
//     verified on read, so the body goes unsigned (as it does over https).
//   - A CRC32C of the body in the x-amz-checksum-crc32c header: the body is
//     still checked in transit, by the server, at less than half the client
//     CPU of the default streaming signature. We compute it ourselves rather
//     than let minio-go send it as a trailer: on its own retry of a request
//     the server answered with an error (one that was starting up), the
//     trailer did not match the body resent, and the Put failed for good
//     with "The provided 'x-amz-checksum' header does not match".
//   - SendContentMd5 false (the default): an MD5 pass costs more than SHA-256
//     and only duplicates the CRC.
//   - ConcurrentStreamParts off (the default): it only helps multipart uploads
//     of unknown size; we always send a known size from a bytes.Reader.
//
// An unsigned body is not protected against tampering on the way: use Secure
// when the network is not trusted. putOptions returns a fresh value each time
// because PutObject adds entries to the UserMetadata map.
func putOptions(data []byte) minio.PutObjectOptions {
	sum := binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, castagnoli))
	return minio.PutObjectOptions{
		DisableMultipart:     true,
		DisableContentSha256: true,
		SendContentMd5:       false,
		UserMetadata:         map[string]string{"x-amz-checksum-crc32c": base64.StdEncoding.EncodeToString(sum)},
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Put stores data under key with a single PUT request.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)), putOptions(data))
	if err != nil {
		return fmt.Errorf("put %s: %w", key, classify(ctx, err))
	}
	return nil
}

// Get returns the object under key, read with one request into a buffer
// sized from the response.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	body, info, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, classify(ctx, err))
	}
	defer body.Close()
	data, err := readBody(body, info.Size)
	if err != nil {
		return nil, fmt.Errorf("get %s: read body: %w", key, classify(ctx, err))
	}
	return data, nil
}

// readBody reads a response body of the given size into one allocation,
// falling back to io.ReadAll when the server sent no length (size -1).
func readBody(body io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return io.ReadAll(body)
	}
	data := make([]byte, size)
	_, err := io.ReadFull(body, data)
	return data, err
}

// Stat returns the size of the object under key.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	name, err := s.object(key)
	if err != nil {
		return store.Info{}, fmt.Errorf("stat: %w", err)
	}
	info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, classify(ctx, err))
	}
	return store.Info{Key: key, Size: info.Size}, nil
}

// Peek returns the first n bytes of the object under key and its size, with
// one ranged GET: the response's Content-Range names the whole size.
func (s *Store) Peek(ctx context.Context, key string, n int) ([]byte, store.Info, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("peek: %w", err)
	}
	if n <= 0 {
		info, err := s.Stat(ctx, key)
		return nil, info, err
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(0, int64(n)-1); err != nil {
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, err)
	}
	body, info, header, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" { // an empty object has no byte 0
			st, err := s.Stat(ctx, key)
			return nil, st, err
		}
		return nil, store.Info{}, fmt.Errorf("peek %s: %w", key, classify(ctx, err))
	}
	defer body.Close()
	data, err := readBody(body, info.Size)
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("peek %s: read body: %w", key, classify(ctx, err))
	}
	size := int64(len(data))
	if cr := header.Get("Content-Range"); cr != "" { // "bytes 0-59/123456"
		_, total, ok := strings.Cut(cr, "/")
		if size, err = strconv.ParseInt(total, 10, 64); !ok || err != nil {
			return nil, store.Info{}, fmt.Errorf("peek %s: Content-Range %q", key, cr)
		}
	}
	if len(data) > n {
		data = data[:n]
	}
	return data, store.Info{Key: key, Size: size}, nil
}

// Delete removes the object under key; S3 reports success for missing keys.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	err = classify(ctx, s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List yields the objects whose keys start with prefix, in key order, pages
// fetched as the consumer advances. Object names under the store's prefix that
// are not valid keys, such as the "dir/" markers some consoles create, are
// skipped. A prefix whose part up to the last slash is not a valid key yields
// an error wrapping store.ErrInvalidKey.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.Info, error] {
	return func(yield func(store.Info, error) bool) {
		if !validPrefix(prefix) {
			yield(store.Info{}, fmt.Errorf("list: %w %q", store.ErrInvalidKey, prefix))
			return
		}
		// minio-go asks for the context to be cancelled when the consumer stops
		// early, so the listing releases what it holds.
		listCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		fetchOwner := false
		opts := minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true, FetchOwner: &fetchOwner}
		for obj := range s.client.ListObjectsIter(listCtx, s.bucket, opts) {
			if obj.Err != nil {
				yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, classify(ctx, obj.Err)))
				return
			}
			key := strings.TrimPrefix(obj.Key, s.prefix)
			if !store.ValidKey(key) {
				continue
			}
			if !yield(store.Info{Key: key, Size: obj.Size}, nil) {
				return
			}
		}
		// The listing ends without an error when the context is cancelled
		// between pages; report it, or the caller would take a partial listing
		// for a whole one.
		if err := ctx.Err(); err != nil {
			yield(store.Info{}, fmt.Errorf("list %q: %w", prefix, err))
		}
	}
}

// object returns the object name of key, or an error wrapping
// store.ErrInvalidKey.
func (s *Store) object(key string) (string, error) {
	if !store.ValidKey(key) {
		return "", fmt.Errorf("%w %q", store.ErrInvalidKey, key)
	}
	return s.prefix + key, nil
}

// validPrefix reports whether prefix could start a valid key: empty, or its
// part up to the last slash is a valid key.
func validPrefix(prefix string) bool {
	i := strings.LastIndexByte(prefix, '/')
	return i < 0 || store.ValidKey(prefix[:i])
}

// classify wraps err with the store sentinel matching its S3 error code or,
// for a request that got no answer, store.ErrUnavailable when the failure
// may pass, keeping the original error in the chain. An error that arrives
// once ctx has ended is the caller's, never ErrUnavailable.
func classify(ctx context.Context, err error) error {
	var sentinel error
	var resp minio.ErrorResponse
	switch {
	case err == nil:
		return nil
	case errors.As(err, &resp):
		sentinel = codeSentinel(resp)
	case ctx.Err() == nil && transportFailure(err):
		sentinel = store.ErrUnavailable
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// codeSentinel returns the store sentinel an S3 error response maps onto,
// or nil. Server errors and throttling are store.ErrUnavailable: the S3
// client has already retried them a few times, but they may still pass.
func codeSentinel(resp minio.ErrorResponse) error {
	switch resp.Code {
	case minio.NoSuchKey, "NotFound":
		return store.ErrNotFound
	case minio.AccessDenied, minio.InvalidAccessKeyID, minio.SignatureDoesNotMatch:
		return store.ErrAccessDenied
	case "XMinioStorageFull":
		return store.ErrNoSpace
	case "SlowDown", "SlowDownRead", "SlowDownWrite", "ServiceUnavailable", "InternalError",
		"RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
		"RequestThrottled", "OperationAborted", "XMinioServerNotInitialized":
		return store.ErrUnavailable
	}
	switch status := resp.StatusCode; {
	case strings.Contains(resp.Message, "minimum free drive threshold"), status == http.StatusInsufficientStorage:
		return store.ErrNoSpace
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests,
		status >= 500 && status != http.StatusNotImplemented && status != http.StatusHTTPVersionNotSupported:
		return store.ErrUnavailable
	}
	return nil
}

// transportFailure reports whether err, from a request that got no S3
// answer, may pass: the connection refused, reset or cut short, a timeout,
// the server's name not resolving for now. A certificate the client
// rejects, a name that does not exist and a malformed request do not pass.
func transportFailure(err error) bool {
	var (
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		urlErr   *url.Error
		opErr    *net.OpError
		timeout  interface{ Timeout() bool }
		syscalls = []error{
			syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
			syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN,
		}
	)
	switch {
	case errors.As(err, &dnsErr):
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &recErr):
		return false
	case errors.As(err, &opErr), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case slices.ContainsFunc(syscalls, func(target error) bool { return errors.Is(err, target) }):
		return true
	case errors.As(err, &urlErr) && errors.Is(err, io.EOF): // the server hung up before answering
		return true
	}
	return errors.As(err, &timeout) && timeout.Timeout()
}
