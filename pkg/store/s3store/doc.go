// Package s3store implements store.Store on an S3 bucket (MinIO, AWS S3 or
// another compatible server) through minio-go. A store lives under an
// optional key prefix, so several repositories can share a bucket.
//
// Each object is written with a single PUT, so a reader never sees a partial
// object, and read back with a single GET. S3 error codes are translated to
// the store sentinels (NoSuchKey to store.ErrNotFound, AccessDenied and
// refused credentials to store.ErrAccessDenied, MinIO's storage-full error to
// store.ErrNoSpace), keeping the server's message in the chain.
package s3store
