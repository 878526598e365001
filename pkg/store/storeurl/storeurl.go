// Package storeurl opens the store a repository string names: a directory
// path, file://PATH, or s3://BUCKET/PREFIX with the endpoint and credentials
// taken from S3Options (normally the usual AWS_* environment variables).
package storeurl

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
)

// S3Options locate and authenticate an S3 service.
type S3Options struct {
	// Endpoint is a URL ("http://127.0.0.1:9000") or host[:port], which
	// means https. Empty means s3.amazonaws.com.
	Endpoint     string
	AccessKey    string
	SecretKey    string
	SessionToken string
	Region       string
}

// S3FromEnv reads S3Options from the environment: BULK_S3_ENDPOINT or
// AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, and AWS_REGION or AWS_DEFAULT_REGION.
func S3FromEnv() S3Options {
	first := func(names ...string) string {
		for _, n := range names {
			if v := os.Getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	return S3Options{
		Endpoint:     first("BULK_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		AccessKey:    first("AWS_ACCESS_KEY_ID"),
		SecretKey:    first("AWS_SECRET_ACCESS_KEY"),
		SessionToken: first("AWS_SESSION_TOKEN"),
		Region:       first("AWS_REGION", "AWS_DEFAULT_REGION"),
	}
}

// Options tunes Open.
type Options struct {
	S3 S3Options
	// Create allows creating the directory or bucket when it is missing.
	Create bool
}

// Open opens the store named by repo.
func Open(ctx context.Context, repo string, opts Options) (store.Store, error) {
	switch {
	case repo == "":
		return nil, fmt.Errorf("no repository given (use -r REPO or BULK_REPO)")
	case strings.HasPrefix(repo, "s3://"):
		cfg, err := s3Config(repo, opts.S3)
		if err != nil {
			return nil, err
		}
		cfg.CreateBucket = opts.Create
		return s3store.New(ctx, cfg)
	case strings.HasPrefix(repo, "file://"):
		repo = strings.TrimPrefix(repo, "file://")
	case strings.Contains(repo, "://"):
		return nil, fmt.Errorf("repository %q: unknown scheme (want a path, file://PATH or s3://BUCKET/PREFIX)", repo)
	}
	if !opts.Create {
		if fi, err := os.Stat(repo); err != nil {
			return nil, fmt.Errorf("repository %s: %w", repo, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("repository %s: not a directory", repo)
		}
	}
	return dirstore.New(repo)
}

func s3Config(repo string, o S3Options) (s3store.Config, error) {
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(repo, "s3://"), "/")
	if bucket == "" {
		return s3store.Config{}, fmt.Errorf("repository %q: no bucket (want s3://BUCKET/PREFIX)", repo)
	}
	cfg := s3store.Config{
		Endpoint: "s3.amazonaws.com", Secure: true,
		AccessKey: o.AccessKey, SecretKey: o.SecretKey, SessionToken: o.SessionToken, Region: o.Region,
		Bucket: bucket, Prefix: strings.Trim(prefix, "/"),
	}
	if o.Endpoint != "" {
		if strings.Contains(o.Endpoint, "://") {
			u, err := url.Parse(o.Endpoint)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return cfg, fmt.Errorf("S3 endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", o.Endpoint)
			}
			cfg.Endpoint, cfg.Secure = u.Host, u.Scheme == "https"
		} else {
			cfg.Endpoint = o.Endpoint
		}
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return cfg, fmt.Errorf("repository %s: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", repo)
	}
	return cfg, nil
}
