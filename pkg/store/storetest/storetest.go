package storetest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// Run runs the conformance suite as parallel subtests. Each subtest calls
// newStore for a fresh, empty store, so newStore must be safe for concurrent
// use and should register its own cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"Missing", testMissing},
		{"Peek", testPeek},
		{"Delete", testDelete},
		{"List", testList},
		{"ListEarlyBreak", testListEarlyBreak},
		{"ListCancelled", testListCancelled},
		{"InvalidKeys", testInvalidKeys},
		{"ConcurrentPut", testConcurrentPut},
		{"PutCancelled", testPutCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newStore(t))
		})
	}
}

func testPeek(t *testing.T, s store.Store) {
	ctx := t.Context()
	data := randomBytes(100<<10, 7)
	for key, obj := range map[string][]byte{"peek/big": data, "peek/small": data[:10], "peek/empty": nil} {
		if err := s.Put(ctx, key, obj); err != nil {
			t.Fatalf("Put %s: %v", key, err)
		}
	}
	tests := []struct {
		key      string
		n        int
		want     []byte
		wantSize int64
	}{
		{"peek/big", 60, data[:60], int64(len(data))},
		{"peek/big", len(data), data, int64(len(data))},
		{"peek/small", 60, data[:10], 10},
		{"peek/empty", 60, nil, 0},
	}
	for _, tt := range tests {
		got, info, err := s.Peek(ctx, tt.key, tt.n)
		if err != nil {
			t.Fatalf("Peek(%s, %d): %v", tt.key, tt.n, err)
		}
		if !bytes.Equal(got, tt.want) || info.Size != tt.wantSize || info.Key != tt.key {
			t.Errorf("Peek(%s, %d) = %d bytes, %+v; want %d bytes, size %d", tt.key, tt.n, len(got), info, len(tt.want), tt.wantSize)
		}
	}
	if _, _, err := s.Peek(ctx, "peek/missing", 60); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Peek of a missing key = %v, want ErrNotFound", err)
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"1B", 1},
		{"5MiB", 5 << 20},
		{"17MiB", 17 << 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			key := "data/" + tt.name
			want := randomBytes(tt.size, uint64(i))
			if err := s.Put(ctx, key, want); err != nil {
				t.Fatalf("Put: %v", err)
			}
			got, err := s.Get(ctx, key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			requireEqualBytes(t, got, want)
			info, err := s.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if wantInfo := (store.Info{Key: key, Size: int64(tt.size)}); info != wantInfo {
				t.Errorf("Stat = %+v, want %+v", info, wantInfo)
			}
		})
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "snapshots/latest"
	for _, data := range []string{"first version, longer", "second"} {
		if err := s.Put(ctx, key, []byte(data)); err != nil {
			t.Fatalf("Put %q: %v", data, err)
		}
	}
	got, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got) != "second" {
		t.Errorf("Get = %q, want %q", got, "second")
	}
	if want := []store.Info{{Key: key, Size: 6}}; !slices.Equal(list(t, s, ""), want) {
		t.Errorf("List = %v, want %v", list(t, s, ""), want)
	}
}

func testMissing(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "dir/present", "x")
	put(t, s, "leaf", "x")
	tests := []struct {
		name string
		key  string
	}{
		{"never written", "absent"},
		{"sibling", "dir/absent"},
		{"directory", "dir"},
		{"below an object", "leaf/child"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Get(ctx, tt.key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q) error = %v, want %v", tt.key, err, store.ErrNotFound)
			}
			if _, err := s.Stat(ctx, tt.key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Stat(%q) error = %v, want %v", tt.key, err, store.ErrNotFound)
			}
			if err := s.Delete(ctx, tt.key); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", tt.key, err)
			}
		})
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "index/1", "one")
	put(t, s, "index/2", "two!")
	if err := s.Delete(ctx, "index/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "index/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete: error = %v, want %v", err, store.ErrNotFound)
	}
	if _, err := s.Stat(ctx, "index/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after Delete: error = %v, want %v", err, store.ErrNotFound)
	}
	if want := []store.Info{{Key: "index/2", Size: 4}}; !slices.Equal(list(t, s, ""), want) {
		t.Errorf("List after Delete = %v, want %v", list(t, s, ""), want)
	}
	if err := s.Delete(ctx, "index/1"); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
}

func testList(t *testing.T, s store.Store) {
	// Sizes differ so a listing with the wrong sizes fails too.
	objects := map[string]int{
		"chunks/ab/ab01": 1,
		"chunks/ab/ab02": 2,
		"chunks/ac/ac01": 3,
		"chunks/b/b01":   4,
		"chunksx":        5,
		"snapshots/s1":   6,
		"top":            7,
	}
	for key, size := range objects {
		put(t, s, key, strings.Repeat("x", size))
	}
	tests := []struct {
		name   string
		prefix string
		want   []string
	}{
		{"empty prefix", "", []string{"chunks/ab/ab01", "chunks/ab/ab02", "chunks/ac/ac01", "chunks/b/b01", "chunksx", "snapshots/s1", "top"}},
		{"directory", "chunks/", []string{"chunks/ab/ab01", "chunks/ab/ab02", "chunks/ac/ac01", "chunks/b/b01"}},
		{"no slash", "chunks", []string{"chunks/ab/ab01", "chunks/ab/ab02", "chunks/ac/ac01", "chunks/b/b01", "chunksx"}},
		{"partial element", "chunks/a", []string{"chunks/ab/ab01", "chunks/ab/ab02", "chunks/ac/ac01"}},
		{"nested directory", "chunks/ab/", []string{"chunks/ab/ab01", "chunks/ab/ab02"}},
		{"partial file name", "chunks/ab/ab0", []string{"chunks/ab/ab01", "chunks/ab/ab02"}},
		{"whole key", "snapshots/s1", []string{"snapshots/s1"}},
		{"top-level object", "to", []string{"top"}},
		{"no match", "nothing/", nil},
		{"object as directory", "top/", nil},
		{"below an object", "top/a/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []store.Info
			for _, key := range tt.want {
				want = append(want, store.Info{Key: key, Size: int64(objects[key])})
			}
			if got := list(t, s, tt.prefix); !slices.Equal(got, want) {
				t.Errorf("List(%q) = %v, want %v", tt.prefix, got, want)
			}
		})
	}
}

func testListEarlyBreak(t *testing.T, s store.Store) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("k/%d", i), "x")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range s.List(t.Context(), "") {
			if err != nil {
				t.Errorf("List: %v", err)
			}
			break
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("List did not return after the consumer stopped early")
	}
	if got := len(list(t, s, "")); got != 5 {
		t.Errorf("List after early break yields %d objects, want 5", got)
	}
}

func testListCancelled(t *testing.T, s store.Store) {
	put(t, s, "k/1", "x")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var last error
	for _, err := range s.List(ctx, "") {
		last = err
	}
	if !errors.Is(last, context.Canceled) {
		t.Errorf("List with a cancelled context: last error = %v, want %v", last, context.Canceled)
	}
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	keys := []string{"", "/abs", "a/../b", "..", "a//b", "./a", "a/", `a\b`}
	for _, key := range keys {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Put error = %v, want %v", err, store.ErrInvalidKey)
			}
			if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Get error = %v, want %v", err, store.ErrInvalidKey)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Stat error = %v, want %v", err, store.ErrInvalidKey)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Delete error = %v, want %v", err, store.ErrInvalidKey)
			}
			// Used as a directory, an invalid key makes an invalid prefix.
			var last error
			for _, err := range s.List(ctx, key+"/") {
				last = err
			}
			if !errors.Is(last, store.ErrInvalidKey) {
				t.Errorf("List(%q) error = %v, want %v", key+"/", last, store.ErrInvalidKey)
			}
		})
	}
}

func testConcurrentPut(t *testing.T, s store.Store) {
	const (
		writers = 8
		size    = 1 << 20
	)
	tests := []struct {
		name string
		key  string
		seed func(writer int) uint64
	}{
		// Content-addressed writes: every writer stores the same bytes.
		{"same content", "chunks/same", func(int) uint64 { return 1 }},
		// The strongest case: whatever wins, it must be one writer's whole object.
		{"different content", "chunks/different", func(w int) uint64 { return uint64(w) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, key := t.Context(), tt.key
			candidates := make([][]byte, writers)
			errs := make([]error, writers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				candidates[w] = randomBytes(size, tt.seed(w))
				wg.Go(func() {
					<-start
					errs[w] = s.Put(ctx, key, candidates[w])
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("Put: %v", err)
			}
			got, err := s.Get(ctx, key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !slices.ContainsFunc(candidates, func(c []byte) bool { return bytes.Equal(got, c) }) {
				t.Errorf("Get returned %d bytes that match no writer's object", len(got))
			}
			if want := []store.Info{{Key: key, Size: size}}; !slices.Equal(list(t, s, key), want) {
				t.Errorf("List = %v, want %v", list(t, s, key), want)
			}
		})
	}
}

func testPutCancelled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	const key = "chunks/cancelled"
	if err := s.Put(ctx, key, []byte("data")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: error = %v, want %v", err, context.Canceled)
	}
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after cancelled Put: error = %v, want %v", err, store.ErrNotFound)
	}
}

// Bench benchmarks Put and Get of 4 MiB objects, one goroutine and parallel,
// reporting throughput and allocations. Each sub-benchmark calls newStore for
// a fresh store.
func Bench(b *testing.B, newStore func(b *testing.B) store.Store) {
	const size = 4 << 20
	data := randomBytes(size, 1)
	// Puts cycle over a few keys so long runs do not fill the disk.
	const keys = 16
	key := func(i int) string { return fmt.Sprintf("bench/%02d", i%keys) }

	b.Run("Put/4MiB", func(b *testing.B) {
		s, ctx := newStore(b), b.Context()
		b.SetBytes(size)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := s.Put(ctx, key(i), data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get/4MiB", func(b *testing.B) {
		s, ctx := newStore(b), b.Context()
		if err := s.Put(ctx, key(0), data); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Get(ctx, key(0)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PutParallel/4MiB", func(b *testing.B) {
		s, ctx := newStore(b), b.Context()
		var mu sync.Mutex
		next := 0
		b.SetBytes(size)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			for pb.Next() {
				if err := s.Put(ctx, key(i), data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("GetParallel/4MiB", func(b *testing.B) {
		s, ctx := newStore(b), b.Context()
		if err := s.Put(ctx, key(0), data); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Get(ctx, key(0)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// put stores data under key or fails the test.
func put(t *testing.T, s store.Store, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, []byte(data)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// list returns the listing of prefix sorted by key, or fails the test.
func list(t *testing.T, s store.Store, prefix string) []store.Info {
	t.Helper()
	var infos []store.Info
	for info, err := range s.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		infos = append(infos, info)
	}
	slices.SortFunc(infos, func(a, b store.Info) int { return cmp.Compare(a.Key, b.Key) })
	return infos
}

// requireEqualBytes fails the test, naming the first differing offset, unless
// got and want are equal.
func requireEqualBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	t.Fatalf("got %d bytes, want %d; first difference at offset %d", len(got), len(want), i)
}

// randomBytes returns n reproducible pseudo-random bytes for seed.
func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	buf := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(buf)
	return buf
}
