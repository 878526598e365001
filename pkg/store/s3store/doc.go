// Package s3store implements store.Store on an S3 bucket (MinIO, AWS S3 or
// another compatible server) through minio-go. A store lives under an
// optional key prefix, so several repositories can share a bucket.
//
// Each object is written with a single PUT, so a reader never sees a partial
// object, and read back with a single GET. S3 error codes are translated to
// the store sentinels (NoSuchKey to store.ErrNotFound, AccessDenied and
// refused credentials to store.ErrAccessDenied, MinIO's storage-full error to
// store.ErrNoSpace), keeping the server's message in the chain. Failures that
// may pass wrap store.ErrUnavailable: server errors (5xx, except 501, 505
// and 507, which is store.ErrNoSpace), throttling (SlowDown, 429), and
// requests that got no answer (connection refused or reset, a timeout, a
// body cut short), unless the caller's context had ended. minio-go retries
// these a few times itself before they arrive.
package s3store
