package s3store_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/s3store"
)

// TestPutChecksumChecked: the CRC32C Put sends is checked by the server,
// so a body damaged on the way is refused rather than stored.
func TestPutChecksumChecked(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newStore(t, srv)
	data := []byte("the body as sent")
	if err := s.Put(t.Context(), "good", data); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(t.Context(), "good"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	err := s3store.PutClaiming(t.Context(), s, "damaged", []byte("the body as sEnt"), data)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "checksum") {
		t.Errorf("a body that does not match its checksum: %v, want the server to refuse it", err)
	}
	if _, err := s.Get(t.Context(), "damaged"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the refused object: %v, want not found", err)
	}
	// An object larger than minio-go's multipart threshold (a large
	// manifest) still goes out whole, its checksum with it.
	big := bytes.Repeat([]byte("a manifest of a very large volume "), 3<<20) // 102 MiB
	if err := s.Put(t.Context(), "big", big); err != nil {
		t.Fatalf("Put of %d bytes: %v", len(big), err)
	}
	if got, err := s.Get(t.Context(), "big"); err != nil || !bytes.Equal(got, big) {
		t.Errorf("Get of the large object: %d bytes, %v", len(got), err)
	}
}
