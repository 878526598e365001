package chunk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
)

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func textBytes(n int) []byte {
	line := []byte("2026-11-22T03:00:00Z INFO compressor stored chunk bytes=4194304 ratio=3.1\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		raw      []byte
		wantComp chunk.Compression
	}{
		{"empty", nil, chunk.CompressionNone},
		{"one byte", []byte{7}, chunk.CompressionNone},
		{"text", textBytes(1 << 20), chunk.CompressionZstd},
		{"random", randomBytes(1<<20, 1), chunk.CompressionNone},
		{"zeros", make([]byte, 4<<20), chunk.CompressionZstd},
	}
	for _, level := range []chunk.Level{chunk.LevelFastest, chunk.LevelDefault, chunk.LevelBetter, chunk.LevelBest} {
		s, err := chunk.NewSealer(level)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(level.String()+"/"+tt.name, func(t *testing.T) {
				id := chunk.Sum(tt.raw)
				obj := s.Seal(nil, id, tt.raw)
				h, err := chunk.ParseHeader(obj)
				if err != nil {
					t.Fatal(err)
				}
				if h.Compression != tt.wantComp || h.ID != id || h.RawLen != int64(len(tt.raw)) {
					t.Fatalf("header = %+v, want compression %d, id %s, raw %d", h, tt.wantComp, id, len(tt.raw))
				}
				got, err := chunk.Open([]byte("prefix"), id, obj)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[6:], tt.raw) || string(got[:6]) != "prefix" {
					t.Fatalf("Open returned %d bytes, want prefix + %d raw bytes", len(got), len(tt.raw))
				}
			})
		}
	}
}

func TestOpenDetectsCorruption(t *testing.T) {
	t.Parallel()
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	raw := textBytes(256 << 10)
	id := chunk.Sum(raw)
	good := s.Seal(nil, id, raw)
	rnd := randomBytes(64<<10, 2)
	rndID := chunk.Sum(rnd)
	stored := s.Seal(nil, rndID, rnd)

	tests := []struct {
		name   string
		id     chunk.ID
		mutate func(obj []byte) []byte
	}{
		{"payload bit flip", id, func(o []byte) []byte { o[len(o)/2] ^= 0x10; return o }},
		{"stored payload bit flip", rndID, func(o []byte) []byte { o[len(o)-1] ^= 1; return o }},
		{"truncated payload", id, func(o []byte) []byte { return o[:len(o)-10] }},
		{"truncated header", id, func(o []byte) []byte { return o[:20] }},
		{"bad magic", id, func(o []byte) []byte { o[0] = 'X'; return o }},
		{"future version", id, func(o []byte) []byte { o[4] = 9; return o }},
		{"unknown compression", id, func(o []byte) []byte { o[5] = 7; return o }},
		{"encrypted", id, func(o []byte) []byte { o[6] = 1; return o }},
		{"raw length lie", id, func(o []byte) []byte { o[12]++; return o }},
		{"payload length lie", id, func(o []byte) []byte { o[52]++; return o }},
		{"byte appended", id, func(o []byte) []byte { return append(o, 0) }},
		{"stored payload truncated", rndID, func(o []byte) []byte { return o[:len(o)-1] }},
		{"header length lie", id, func(o []byte) []byte { o[8] = 0xff; o[9] = 0xff; return o }},
		{"wrong chunk asked", chunk.Sum([]byte("other")), func(o []byte) []byte { return o }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := good
			if tt.id == rndID {
				src = stored
			}
			obj := tt.mutate(bytes.Clone(src))
			_, err := chunk.Open(nil, tt.id, obj)
			var ce *chunk.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, chunk.ErrCorrupt) {
				t.Fatalf("Open = %v, want *CorruptError", err)
			}
			if ce.ID != tt.id {
				t.Fatalf("CorruptError names %s, want %s", ce.ID, tt.id)
			}
		})
	}
}

// sealV1 builds an object in format version 1 (52-byte header, no payload
// length), as repositories written before format 2 hold them.
func sealV1(t testing.TB, s *chunk.Sealer, raw []byte) []byte {
	t.Helper()
	v2 := s.Seal(nil, chunk.Sum(raw), raw)
	h, err := chunk.ParseHeader(v2)
	if err != nil {
		t.Fatal(err)
	}
	v1 := append([]byte(nil), v2[:52]...)
	v1[4] = chunk.FormatVersion1
	binary.LittleEndian.PutUint32(v1[8:12], 52)
	return append(v1, v2[h.HeaderLen:]...)
}

func TestOpenFormatVersion1(t *testing.T) {
	t.Parallel()
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range [][]byte{textBytes(64 << 10), randomBytes(8<<10, 3), nil} {
		obj := sealV1(t, s, raw)
		got, err := chunk.Open(nil, chunk.Sum(raw), obj)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("Open of a format 1 object: %v (%d bytes, want %d)", err, len(got), len(raw))
		}
	}
}

func TestCheckSize(t *testing.T) {
	t.Parallel()
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	text, rnd := textBytes(64<<10), randomBytes(8<<10, 4)
	compressed, stored := s.Seal(nil, chunk.Sum(text), text), s.Seal(nil, chunk.Sum(rnd), rnd)
	v1compressed, v1stored := sealV1(t, s, text), sealV1(t, s, rnd)
	tests := []struct {
		name    string
		obj     []byte
		size    int64
		wantErr error
	}{
		{"compressed, whole", compressed, int64(len(compressed)), nil},
		{"compressed, truncated", compressed, int64(len(compressed)) - 1, chunk.ErrFormat},
		{"compressed, extended", compressed, int64(len(compressed)) + 1, chunk.ErrFormat},
		{"stored, whole", stored, int64(len(stored)), nil},
		{"stored, truncated", stored, 100, chunk.ErrFormat},
		{"format 1 stored, whole", v1stored, int64(len(v1stored)), nil},
		{"format 1 stored, truncated", v1stored, int64(len(v1stored)) - 10, chunk.ErrFormat},
		{"format 1 compressed", v1compressed, int64(len(v1compressed)), chunk.ErrUnknownSize},
		{"header cut short", compressed[:40], int64(len(compressed)), chunk.ErrFormat},
		{"not an object", []byte(strings.Repeat("x", 80)), 80, chunk.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := tt.obj[:min(len(tt.obj), chunk.MaxHeaderPrefix)]
			_, err := chunk.CheckSize(prefix, tt.size)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckSize = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestOpenBoundsDecoding: a frame that decodes to far more than the
// header's raw length (a zstd bomb in a hostile repository) is refused
// without decoding it whole.
func TestOpenBoundsDecoding(t *testing.T) { // not parallel: it counts allocations
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	huge := make([]byte, 256<<20) // zeros: a 256 MiB frame of a few KiB
	obj := s.Seal(nil, chunk.Sum(huge), huge)
	small := []byte("claimed")
	binary.LittleEndian.PutUint64(obj[12:20], uint64(len(small))) // the header lies: 7 raw bytes
	id := chunk.Sum(small)
	copy(obj[20:52], id[:])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = chunk.Open(nil, id, obj)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, chunk.ErrCorrupt) {
		t.Fatalf("Open of a bomb = %v, want ErrCorrupt", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("Open allocated %d MiB decoding a frame that claims %d bytes", grew>>20, len(small))
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	id := chunk.Sum([]byte("x"))
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"valid", id.String(), false},
		{"short", id.String()[:10], true},
		{"not hex", "zz" + id.String()[2:], true},
		{"uppercase", "AB" + id.String()[2:], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chunk.ParseID(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseID(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != id {
				t.Fatalf("ParseID = %s, want %s", got, id)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    chunk.Level
		wantErr bool
	}{
		{"", chunk.LevelFastest, false},
		{"fastest", chunk.LevelFastest, false},
		{"default", chunk.LevelDefault, false},
		{"better", chunk.LevelBetter, false},
		{"best", chunk.LevelBest, false},
		{"max", 0, true},
	}
	for _, tt := range tests {
		got, err := chunk.ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestIsZero(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 4095, 64 << 10, 64<<10 + 1, 4 << 20} {
		b := make([]byte, n)
		if !chunk.IsZero(b) {
			t.Errorf("IsZero(%d zero bytes) = false", n)
		}
		if n > 0 {
			b[n-1] = 1
			if chunk.IsZero(b) {
				t.Errorf("IsZero with last of %d bytes set = true", n)
			}
		}
	}
}

func FuzzOpen(f *testing.F) {
	s, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		f.Fatal(err)
	}
	raw := textBytes(4096)
	f.Add(s.Seal(nil, chunk.Sum(raw), raw))
	f.Add(s.Seal(nil, chunk.Sum(nil), nil))
	f.Fuzz(func(t *testing.T, obj []byte) {
		h, err := chunk.ParseHeader(obj)
		if err != nil {
			return
		}
		got, err := chunk.Open(nil, h.ID, obj)
		if err == nil && chunk.Sum(got) != h.ID {
			t.Fatalf("Open accepted data that does not hash to its ID")
		}
	})
}

func ExampleSealer_Seal() {
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	raw := bytes.Repeat([]byte("backup "), 1000)
	id := chunk.Sum(raw)
	obj := s.Seal(nil, id, raw)
	back, err := chunk.Open(nil, id, obj)
	fmt.Println(len(raw), len(obj) < len(raw), bytes.Equal(back, raw), err)
	// Output: 7000 true true <nil>
}

func BenchmarkSeal(b *testing.B) {
	for _, level := range []chunk.Level{chunk.LevelFastest, chunk.LevelDefault, chunk.LevelBetter} {
		for _, size := range []int{1 << 20, 4 << 20, 16 << 20} {
			b.Run(fmt.Sprintf("%s/%dMiB", level, size>>20), func(b *testing.B) {
				s, err := chunk.NewSealer(level)
				if err != nil {
					b.Fatal(err)
				}
				raw := append(textBytes(size/2), randomBytes(size/4, 3)...)
				raw = append(raw, make([]byte, size-len(raw))...)
				id := chunk.Sum(raw)
				buf := make([]byte, 0, size+1024)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					buf = s.Seal(buf[:0], id, raw)
				}
			})
		}
	}
}

func BenchmarkSum(b *testing.B) {
	raw := randomBytes(4<<20, 4)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		chunk.Sum(raw)
	}
}

func BenchmarkOpen(b *testing.B) {
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	raw := textBytes(4 << 20)
	id := chunk.Sum(raw)
	obj := s.Seal(nil, id, raw)
	buf := make([]byte, 0, len(raw))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = chunk.Open(buf[:0], id, obj); err != nil {
			b.Fatal(err)
		}
	}
}
