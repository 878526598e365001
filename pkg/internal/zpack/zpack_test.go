package zpack_test

import (
	"bytes"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/internal/zpack"
)

// TestPackUnpack: what is packed unpacks to the same bytes, in a slice no
// larger than it needs, and more than the limit is refused.
func TestPackUnpack(t *testing.T) {
	t.Parallel()
	src := bytes.Repeat([]byte("scan entry "), 10_000)
	packed := zpack.Pack(src)
	if cap(packed) != len(packed) || len(packed) >= len(src)/10 {
		t.Errorf("packed %d bytes into %d (capacity %d)", len(src), len(packed), cap(packed))
	}
	for _, limit := range []int{len(src), 1 << 20} {
		got, err := zpack.Unpack(packed, limit)
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("limit %d: unpacked %d bytes, %v", limit, len(got), err)
		}
	}
	if _, err := zpack.Unpack(packed, len(src)-1); err == nil {
		t.Error("unpacked past the limit")
	}
	if _, err := zpack.Unpack([]byte("not zstd"), 1<<20); err == nil {
		t.Error("unpacked garbage")
	}
}
