package bufpool_test

import (
	"testing"
	"unsafe"

	"github.com/bulkbackup/bulkbackup/pkg/internal/bufpool"
)

func same(a, b []byte) bool { return unsafe.SliceData(a) == unsafe.SliceData(b) }

func TestPool(t *testing.T) {
	allocs := 0
	p := bufpool.New(2, func(n int) []byte { allocs++; return make([]byte, n, n+10) })

	a := p.Get(100)
	if len(a) != 100 || allocs != 1 {
		t.Fatalf("Get(100): len %d after %d allocations, want 100 after 1", len(a), allocs)
	}
	p.Put(a)
	steps := []struct {
		name      string
		n         int
		reuses    []byte // the buffer Get must return again, or nil for a new one
		allocated int
	}{
		{"a kept buffer is reused", 50, a, 1},
		{"an empty pool allocates", 10, nil, 2},
	}
	for _, s := range steps {
		b := p.Get(s.n)
		if len(b) != s.n || allocs != s.allocated || (s.reuses != nil) != same(b, s.reuses) {
			t.Errorf("%s: Get(%d) = len %d, reused %v, %d allocations", s.name, s.n, len(b), same(b, s.reuses), allocs)
		}
	}

	// A buffer too small for the request is dropped, not returned.
	p.Put(make([]byte, 5))
	if b := p.Get(20); cap(b) < 20 || allocs != 3 {
		t.Errorf("Get(20) after keeping a 5-byte buffer: cap %d, %d allocations", cap(b), allocs)
	}

	// At most 2 buffers are kept.
	bufs := [][]byte{p.Get(1), p.Get(1), p.Get(1)}
	for _, b := range bufs {
		p.Put(b)
	}
	before := allocs
	for range 3 {
		p.Get(1)
	}
	if got := allocs - before; got != 1 {
		t.Errorf("three Gets after putting back three buffers into a pool of 2 allocated %d, want 1", got)
	}
}
