package s3store

import (
	"bytes"
	"context"
)

// PutClaiming is Put of body under key with the checksum of claimed: a
// body damaged on the way, as the server sees it.
func PutClaiming(ctx context.Context, s *Store, key string, body, claimed []byte) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, s.bucket, name, bytes.NewReader(body), int64(len(body)), putOptions(claimed))
	return err
}
