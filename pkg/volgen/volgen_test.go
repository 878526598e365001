package volgen_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// generate returns an image in memory.
func generate(t testing.TB, size int64, opts volgen.Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Grow(int(size))
	if err := volgen.Write(t.Context(), &buf, size, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sum(p []byte) string {
	h := sha256.Sum256(p)
	return hex.EncodeToString(h[:])
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		size int64
		opts volgen.Options
		// want pins the bytes across releases; update it only for an
		// intended change of the generated images.
		want string
	}{
		{name: "default seed 1", size: 24<<20 + 1, opts: volgen.Options{Seed: 1},
			want: "ffcf44608987102f77d6cbee0264e5d12f1cc2f13dca458fd2c0b1505ca6c563"},
		{name: "default seed 2 odd size", size: 5<<20 + 123, opts: volgen.Options{Seed: 2},
			want: "975dac5b2c65fed78dda2ef73e1f8906223b738a4bcb3ca131eed30dab892c16"},
		{name: "text", size: 1 << 20, opts: volgen.Options{Seed: 3, Mix: volgen.Mix{Text: 1}},
			want: "3f7260b81b4a713ff8541d5d26b4d9e9ecad56cc8a9753f935b0983204b142c2"},
		{name: "binary", size: 1 << 20, opts: volgen.Options{Seed: 3, Mix: volgen.Mix{Binary: 1}},
			want: "85d4315ec5152b61b00922754e3d7dc57c20c0a1b8cc039248d85732ce40c106"},
		{name: "random", size: 1 << 20, opts: volgen.Options{Seed: 3, Mix: volgen.Mix{Random: 1}},
			want: "6d26ebc3da1fb042f63ad0761b78b80d8e99425eb96aaea88ac8ce966040818c"},
		{name: "negative seed", size: 1 << 20, opts: volgen.Options{Seed: -7},
			want: "28772665a669752e480d8c446259d34919c64db6e37f9fdfd15d95748efad2e7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := sum(generate(t, tt.size, tt.opts))
			b := sum(generate(t, tt.size, tt.opts))
			if a != b {
				t.Fatalf("two runs differ: %s != %s", a, b)
			}
			if a != tt.want {
				t.Errorf("sha256 = %s, want %s", a, tt.want)
			}
		})
	}
}

func TestSeedsDiffer(t *testing.T) {
	t.Parallel()
	a := generate(t, 8<<20, volgen.Options{Seed: 1})
	b := generate(t, 8<<20, volgen.Options{Seed: 2})
	if bytes.Equal(a, b) {
		t.Fatal("seeds 1 and 2 give the same image")
	}
}

func TestExactSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		size int64
	}{
		{name: "empty", size: 0},
		{name: "one byte", size: 1},
		{name: "below a block", size: 4095},
		{name: "one block", size: 4096},
		{name: "above a block", size: 4097},
		{name: "odd", size: 1<<20 + 17},
		{name: "across several regions", size: 21<<20 + 4097},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := generate(t, tt.size, volgen.Options{Seed: 5})
			if int64(len(img)) != tt.size {
				t.Fatalf("Write wrote %d bytes, want %d", len(img), tt.size)
			}

			path := filepath.Join(t.TempDir(), "vol.img")
			if err := volgen.WriteFile(t.Context(), path, tt.size, volgen.Options{Seed: 5}); err != nil {
				t.Fatal(err)
			}
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(file, img) {
				t.Fatalf("WriteFile content (%d bytes) differs from Write (%d bytes)", len(file), len(img))
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	big := generate(t, 20<<20, volgen.Options{Seed: 9})
	for _, size := range []int64{0, 1, 4097, 3<<20 + 5, 19 << 20} {
		if small := generate(t, size, volgen.Options{Seed: 9}); !bytes.Equal(small, big[:size]) {
			t.Errorf("image of %d bytes is not a prefix of the 20 MiB image", size)
		}
	}
}

// ratio compresses p with zstd's fastest level, as the compressor does.
func ratio(t testing.TB, p []byte) float64 {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return float64(len(p)) / float64(len(enc.EncodeAll(p, nil)))
}

func TestDefaultMix(t *testing.T) {
	t.Parallel()
	const size, block = 64 << 20, 4 << 20
	img := generate(t, size, volgen.Options{Seed: 1})

	zeroBlocks := 0
	zero := make([]byte, block)
	for off := 0; off < size; off += block {
		if bytes.Equal(img[off:off+block], zero) {
			zeroBlocks++
		}
	}
	if zeroBlocks == 0 {
		t.Error("no 4 MiB-aligned all-zero 4 MiB block")
	}

	r := ratio(t, img)
	t.Logf("zstd fastest ratio %.2f, %d all-zero 4 MiB blocks", r, zeroBlocks)
	if r < 1.5 || r > 6 {
		t.Errorf("zstd ratio %.2f, want within [1.5, 6]", r)
	}
}

func TestKindRatios(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mix      volgen.Mix
		min, max float64
	}{
		{name: "text", mix: volgen.Mix{Text: 1}, min: 3, max: 5},
		{name: "binary", mix: volgen.Mix{Binary: 1}, min: 1.7, max: 2.5},
		{name: "random", mix: volgen.Mix{Random: 1}, min: 0.99, max: 1.01},
		{name: "zeros", mix: volgen.Mix{Zeros: 1}, min: 1000, max: math.Inf(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := generate(t, 24<<20, volgen.Options{Seed: 4, Mix: tt.mix})
			r := ratio(t, img)
			t.Logf("zstd fastest ratio %.2f", r)
			if r < tt.min || r > tt.max {
				t.Errorf("zstd ratio %.2f, want within [%v, %v]", r, tt.min, tt.max)
			}
		})
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	img := generate(t, 4<<20, volgen.Options{Seed: 1, Mix: volgen.Mix{Text: 1}})
	lines := strings.Split(string(img), "\n")
	if len(lines) < 10000 {
		t.Fatalf("%d lines in 4 MiB of text, want many short lines", len(lines))
	}
	for _, c := range img {
		if c != '\n' && c != '\t' && (c < ' ' || c > '~') {
			t.Fatalf("text contains byte %#x", c)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	errWrite := errors.New("disk full")

	tests := []struct {
		name    string
		ctx     context.Context
		w       io.Writer
		size    int64
		mix     volgen.Mix
		wantErr error  // checked with errors.Is when set
		wantMsg string // checked as a substring when set
	}{
		{name: "negative size", size: -1, wantMsg: "out of range"},
		{name: "huge size", size: 1<<50 + 1, wantMsg: "out of range"},
		{name: "negative weight", size: 1, mix: volgen.Mix{Text: 1, Random: -1}, wantMsg: "invalid mix"},
		{name: "NaN weight", size: 1, mix: volgen.Mix{Text: math.NaN()}, wantMsg: "invalid mix"},
		{name: "cancelled", ctx: cancelled, size: 64 << 20, wantErr: context.Canceled},
		{name: "writer error", w: &failWriter{after: 5 << 20, err: errWrite}, size: 64 << 20, wantErr: errWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			w := tt.w
			if w == nil {
				w = io.Discard
			}
			err := volgen.Write(ctx, w, tt.size, volgen.Options{Mix: tt.mix})
			if err == nil {
				t.Fatal("Write succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestWriteFileError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	err := volgen.WriteFile(t.Context(), filepath.Join(dir, "missing", "vol.img"), 1, volgen.Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want not exist", err)
	}

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	path := filepath.Join(dir, "vol.img")
	if err := volgen.WriteFile(cancelled, path, 1<<20, volgen.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial file left behind: %v", err)
	}
}

// failWriter fails once more than after bytes have been written.
type failWriter struct {
	after int
	err   error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		return 0, w.err
	}
	w.after -= len(p)
	return len(p), nil
}

func BenchmarkWrite(b *testing.B) {
	for _, bb := range []struct {
		name string
		mix  volgen.Mix
	}{
		{name: "default", mix: volgen.Mix{}},
		{name: "text", mix: volgen.Mix{Text: 1}},
		{name: "binary", mix: volgen.Mix{Binary: 1}},
		{name: "random", mix: volgen.Mix{Random: 1}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			const size = 256 << 20
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if err := volgen.Write(b.Context(), io.Discard, size, volgen.Options{Seed: 1, Mix: bb.mix}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriteFile(b *testing.B) {
	const size = 256 << 20
	path := filepath.Join(b.TempDir(), "vol.img")
	b.SetBytes(size)
	for b.Loop() {
		if err := volgen.WriteFile(b.Context(), path, size, volgen.Options{Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
