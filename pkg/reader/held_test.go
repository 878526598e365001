package reader

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fill holds n chunks of size bytes under job "j", indexes from 0, and
// returns them.
func fill(t *testing.T, h *heldChunks, n int, size int64) []*heldChunk {
	t.Helper()
	var out []*heldChunk
	for i := range n {
		if !h.tryAcquire(size) {
			t.Fatalf("no room for chunk %d of %d", i, n)
		}
		c := &heldChunk{data: make([]byte, size), at: time.Now()}
		h.put(heldKey{job: "j", index: i}, c)
		out = append(out, c)
	}
	return out
}

func TestHeldWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		slots    int   // setSlots; 0 leaves minHeld
		maxBytes int64 // the byte bound
		size     int64 // of each chunk
		want     int   // chunks that fit
	}{
		{"minimum while no compressor is seen", 0, 1 << 30, 1 << 20, minHeld},
		{"follows the compressors' workers", 2 * heldPerWorker * 5, 1 << 30, 1 << 20, 10 * heldPerWorker},
		{"never below the minimum", 1, 1 << 30, 1 << 20, minHeld},
		{"bytes bound the window", 100, 10 << 20, 4 << 20, 2},
		{"one chunk always, however large", 100, 1 << 20, 8 << 20, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHeldChunks(tt.maxBytes)
			if tt.slots > 0 {
				h.setSlots(tt.slots)
			}
			got := 0
			for h.tryAcquire(tt.size) {
				h.put(heldKey{job: "j", index: got}, &heldChunk{data: make([]byte, tt.size), at: time.Now()})
				got++
				if got > 1000 {
					t.Fatal("the window has no bound")
				}
			}
			if got != tt.want {
				t.Errorf("%d chunks held, want %d", got, tt.want)
			}
		})
	}
}

// TestHeldBufferOutlivesDrop: a chunk dropped while a fetch sends from it
// gives its buffer back only once the fetch is done, and exactly once.
func TestHeldBufferOutlivesDrop(t *testing.T) {
	t.Parallel()
	h := newHeldChunks(1 << 30)
	var released [][]byte
	h.release = func(b []byte) { released = append(released, b) }
	c := fill(t, h, 1, 10)[0]
	k := heldKey{job: "j", index: 0}
	borrowed, ok := h.borrow(k)
	if !ok || borrowed != c {
		t.Fatalf("borrow = %v, %v; want the chunk held", borrowed, ok)
	}
	if !h.drop(k, c) {
		t.Fatal("drop of a held chunk reported it was not held")
	}
	if len(released) != 0 {
		t.Fatal("the buffer was given back while a fetch still sends from it")
	}
	if h.drop(k, c) {
		t.Error("a second drop reported the chunk still held")
	}
	h.giveBack(k, c, 10)
	if len(released) != 1 {
		t.Fatalf("buffer given back %d times after the fetch ended, want once", len(released))
	}
	if _, ok := h.borrow(k); ok {
		t.Error("a dropped chunk can still be borrowed")
	}
	if !h.tryAcquire(1 << 20) {
		t.Error("no room after the only chunk was dropped")
	}
}

// TestHeldFetchedInParts: a chunk is held until all its bytes were sent,
// and a failed send does not count.
func TestHeldFetchedInParts(t *testing.T) {
	t.Parallel()
	h := newHeldChunks(1 << 30)
	released := 0
	h.release = func([]byte) { released++ }
	c := fill(t, h, 1, 10)[0]
	k := heldKey{job: "j", index: 0}
	for _, part := range []struct {
		sent     int64
		wantHeld bool
	}{{6, true}, {0, true}, {4, false}} {
		b, ok := h.borrow(k)
		if !ok {
			t.Fatalf("chunk gone before part of %d bytes", part.sent)
		}
		h.giveBack(k, b, part.sent)
		if _, held := h.chunks[k]; held != part.wantHeld {
			t.Fatalf("after a part of %d bytes: held %t, want %t", part.sent, held, part.wantHeld)
		}
	}
	if released != 1 || c.data != nil {
		t.Errorf("buffer given back %d times, want once", released)
	}
}

func TestHeldAcquireWaits(t *testing.T) {
	t.Parallel()
	h := newHeldChunks(1 << 30)
	h.release = func([]byte) {}
	chunks := fill(t, h, minHeld, 1)
	got := make(chan error, 1)
	go func() { got <- h.acquire(t.Context(), context.Background(), 1, func() {}) }()
	select {
	case err := <-got:
		t.Fatalf("acquire with the window full returned %v, want it to wait", err)
	case <-time.After(50 * time.Millisecond): // proves a wait, not a timing
	}
	k := heldKey{job: "j", index: 0}
	c, _ := h.borrow(k)
	h.giveBack(k, c, int64(len(chunks[0].data)))
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("acquire after room was made: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acquire still waits after a chunk was fetched")
	}

	// Shutdown: a chunk waiting for room gives up.
	stopping, stop := context.WithCancel(context.Background())
	go func() { got <- h.acquire(t.Context(), stopping, 1, func() {}) }()
	stop()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("acquire when stopping = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acquire still waits after shutdown began")
	}
}

func TestHeldExpiry(t *testing.T) {
	t.Parallel()
	h := newHeldChunks(1 << 30)
	h.release = func([]byte) {}
	chunks := fill(t, h, minHeld, 1)
	if h.tryAcquire(1) {
		t.Fatal("room in a full window")
	}
	h.mu.Lock()
	chunks[2].at = time.Now().Add(-holdExpiry - time.Second) // nobody fetched it
	h.mu.Unlock()
	if !h.tryAcquire(1) {
		t.Error("no room after a chunk held past holdExpiry")
	}
	if _, ok := h.borrow(heldKey{job: "j", index: 2}); ok {
		t.Error("the expired chunk is still held")
	}
}

func TestHeldAnnouncedBefore(t *testing.T) {
	t.Parallel()
	h := newHeldChunks(1 << 30)
	chunks := fill(t, h, 3, 1)
	now := time.Now()
	h.mu.Lock()
	chunks[0].at = now.Add(-time.Minute) // old, not announced yet: skipped
	chunks[1].at = now.Add(-time.Minute)
	h.mu.Unlock()
	h.announced(chunks[1], 7)
	h.announced(chunks[2], 8) // announced, but just now
	got := h.announcedBefore(now.Add(-orphanCheck))
	if len(got) != 1 || got[0].seq != 7 || got[0].key.index != 1 || got[0].chunk != chunks[1] {
		t.Errorf("announcedBefore = %+v, want only chunk 1 (seq 7)", got)
	}
}

func TestPartOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		off, n, size int64
		want         bool
	}{
		{0, 10, 10, true},
		{4, 6, 10, true},
		{10, 0, 10, true},
		{4, 7, 10, false},
		{-1, 1, 10, false},
		{0, -1, 10, false},
		{11, 0, 10, false},
		{1, 1<<63 - 1, 10, false}, // off+n overflows
	}
	for _, tt := range tests {
		if got := partOf(tt.off, tt.n, tt.size); got != tt.want {
			t.Errorf("partOf(%d, %d, %d) = %t, want %t", tt.off, tt.n, tt.size, got, tt.want)
		}
	}
}

// releases counts how often each buffer goes back to the pool.
type releases map[*byte]int

func (r releases) hook(b []byte) { r[&b[0]]++ }

// countedHeld returns held chunks whose buffers, given back, are counted.
func countedHeld() (*heldChunks, releases) {
	h, rel := newHeldChunks(1<<20), releases{}
	h.release = rel.hook
	return h, rel
}

// TestHeldBufferGoesBackOnce: a buffer goes back to the pool exactly once,
// and never while a fetch sends from it, whatever happens to its chunk: a
// re-issued read replacing it, a failed announcement dropping it after
// that, a part fetch that holds a chunk read again. A buffer given back
// twice was handed to two reads at once, and a compressor stored one
// chunk's bytes as another's.
func TestHeldBufferGoesBackOnce(t *testing.T) {
	t.Parallel()
	k := heldKey{job: "j", index: 26}
	newChunk := func(h *heldChunks) *heldChunk {
		if !h.tryAcquire(8) {
			t.Fatal("no room")
		}
		return &heldChunk{data: make([]byte, 8), at: time.Now()}
	}
	t.Run("replaced, then its announcement fails", func(t *testing.T) {
		t.Parallel()
		h, rel := countedHeld()
		first := newChunk(h)
		h.put(k, first)
		second := newChunk(h)
		h.put(k, second)      // the re-issued read: the first one's buffer goes back
		if h.drop(k, first) { // the first read's announcement failed
			t.Error("dropping a replaced chunk dropped the one that replaced it")
		}
		if c, ok := h.borrow(k); !ok || c != second {
			t.Fatal("the re-issued read's chunk is no longer held")
		}
		h.giveBack(k, second, 8)
		for p, n := range rel {
			if n != 1 {
				t.Errorf("buffer %p went back %d times, want once", p, n)
			}
		}
		if len(rel) != 2 {
			t.Errorf("%d buffers went back, want both", len(rel))
		}
	})
	t.Run("dropped while a fetch sends from it", func(t *testing.T) {
		t.Parallel()
		h, rel := countedHeld()
		c := newChunk(h)
		h.put(k, c)
		buf := &c.data[0]
		if got, ok := h.borrow(k); !ok || got != c {
			t.Fatal("not held")
		}
		if !h.drop(k, c) { // an announcement that timed out, yet was stored
			t.Fatal("not dropped")
		}
		if rel[buf] != 0 {
			t.Fatal("the buffer went back while a fetch was sending from it")
		}
		h.giveBack(k, c, 8)
		if rel[buf] != 1 {
			t.Errorf("the buffer went back %d times after the fetch, want once", rel[buf])
		}
	})
	t.Run("read again for a part, replaced while that part is sent", func(t *testing.T) {
		t.Parallel()
		h, rel := countedHeld()
		c := newChunk(h)
		h.putInUse(k, c) // readAgain: held for the other parts, sending part 0
		buf := &c.data[0]
		h.put(k, newChunk(h)) // a re-issued read of the same chunk
		if rel[buf] != 0 {
			t.Fatal("the buffer went back while its first part was being sent")
		}
		h.giveBack(k, c, 4)
		if rel[buf] != 1 {
			t.Errorf("the buffer went back %d times once sent, want once", rel[buf])
		}
	})
	t.Run("read again for a part, then the other part", func(t *testing.T) {
		t.Parallel()
		h, rel := countedHeld()
		c := newChunk(h)
		h.putInUse(k, c)
		buf := &c.data[0]
		h.giveBack(k, c, 4) // part 0 sent
		if got, ok := h.borrow(k); !ok || got != c {
			t.Fatal("the chunk is not held for its second part")
		}
		h.giveBack(k, c, 4) // part 1 sent: all of it
		if _, ok := h.borrow(k); ok || rel[buf] != 1 {
			t.Errorf("after both parts: held %v, buffer back %d times; want gone, once", ok, rel[buf])
		}
	})
}
