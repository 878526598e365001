// Package bufpool keeps a bounded number of large byte buffers for reuse.
//
// Workers that each need a chunk-sized buffer per chunk would otherwise
// allocate one per chunk: sync.Pool drops its contents at garbage
// collection, so a long backup keeps reallocating multi-megabyte buffers and
// its peak memory depends on when the collector runs. A Pool keeps up to its
// bound across collections, so memory follows the number of workers.
package bufpool

// Pool is a free list of at most a fixed number of buffers. It is safe for
// concurrent use.
type Pool struct {
	free  chan []byte
	alloc func(n int) []byte
}

// New returns a pool keeping at most max buffers; alloc makes a new buffer
// of length n (nil means make).
func New(max int, alloc func(n int) []byte) *Pool {
	if alloc == nil {
		alloc = func(n int) []byte { return make([]byte, n) }
	}
	return &Pool{free: make(chan []byte, max), alloc: alloc}
}

// Get returns a buffer of length n: a kept one if it is large enough, else a
// new one (a kept buffer that is too small is dropped).
func (p *Pool) Get(n int) []byte {
	select {
	case b := <-p.free:
		if cap(b) >= n {
			return b[:n]
		}
	default:
	}
	return p.alloc(n)
}

// Put keeps b for a later Get, unless the pool is full.
func (p *Pool) Put(b []byte) {
	select {
	case p.free <- b:
	default:
	}
}
