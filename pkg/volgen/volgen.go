package volgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
)

const (
	align     = 4 << 10 // every region starts and ends on this boundary
	minRegion = 64 << 10
	maxRegion = 8 << 20
	// extentAlign is the alignment of the all-zero blocks that zero
	// extents are guaranteed to cover: the default chunk size.
	extentAlign = 4 << 20
	// jitter scales the randomness in choosing the next region's kind:
	// a kind can run about this many bytes ahead of or behind its share.
	jitter = 16 << 20
	// maxSize keeps the layout's fixed-point arithmetic within int64.
	maxSize = 1 << 50
)

// Options configures an image. The zero value is a valid default.
type Options struct {
	// Seed selects the image; equal seeds and sizes give equal bytes.
	Seed int64

	// Mix gives the proportions of region kinds; the zero Mix means
	// 35% text, 25% binary, 25% zeros, 15% random.
	Mix Mix
}

// Mix gives the relative share of bytes of each region kind. Weights need
// not sum to 1; they must be finite and non-negative, and a zero weight
// leaves the kind out. The zero Mix is the default mix.
type Mix struct {
	Text   float64 // log and source lines, ~3-5x with zstd fastest
	Binary float64 // executable-like structured data, ~2x
	Zeros  float64 // all-zero runs
	Random float64 // incompressible bytes
}

var defaultMix = Mix{Text: 0.35, Binary: 0.25, Zeros: 0.25, Random: 0.15}

type kind int

const (
	kindText kind = iota
	kindBinary
	kindZeros
	kindRandom
	numKinds
)

// weightScale is the fixed-point scale of the normalised weights; the
// layout uses integers only, so it is the same on every platform.
const weightScale = 1 << 12

// weights validates m and returns its weights per kind, normalised to sum
// to about weightScale. Every positive weight stays at least 1.
func (m Mix) weights() ([numKinds]int64, error) {
	if m == (Mix{}) {
		m = defaultMix
	}
	f := [numKinds]float64{m.Text, m.Binary, m.Zeros, m.Random}
	var sum float64
	for _, x := range f {
		if x < 0 || math.IsNaN(x) || math.IsInf(x, 0) {
			return [numKinds]int64{}, fmt.Errorf("volgen: invalid mix %+v: weights must be finite and non-negative", m)
		}
		sum += x
	}
	var w [numKinds]int64
	for i, x := range f {
		if x > 0 {
			w[i] = max(1, int64(x/sum*weightScale))
		}
	}
	return w, nil
}

// Write writes an image of exactly size bytes to w. It returns the first
// error of w, ctx.Err() if ctx is cancelled (checked between regions), or
// an error for a size outside [0, 1 PiB] or an invalid mix.
func Write(ctx context.Context, w io.Writer, size int64, opts Options) error {
	return generate(ctx, size, opts, func(p []byte, zero bool) error {
		_, err := w.Write(p)
		return err
	})
}

// WriteFile creates or truncates the file at path and writes an image of
// exactly size bytes to it. When path is a regular file, zero regions
// become holes (a sparse file) and on error the partial file is removed;
// other files, such as block devices, are written in full and left alone.
func WriteFile(ctx context.Context, path string, size int64, opts Options) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("volgen: %w", err)
	}
	sparse := false
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("volgen: close %s: %w", path, cerr)
		}
		if err != nil && sparse {
			_ = os.Remove(path)
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("volgen: %w", err)
	}
	sparse = fi.Mode().IsRegular()
	err = generate(ctx, size, opts, func(p []byte, zero bool) error {
		if zero && sparse {
			_, err := f.Seek(int64(len(p)), io.SeekCurrent)
			return err
		}
		_, err := f.Write(p)
		return err
	})
	if err != nil {
		return fmt.Errorf("volgen: write %s: %w", path, err)
	}
	if sparse {
		if err := f.Truncate(size); err != nil { // extends over a trailing hole
			return fmt.Errorf("volgen: %w", err)
		}
	}
	return nil
}

// zeroBuf is written repeatedly for zero regions.
var zeroBuf = make([]byte, 1<<20)

// maxWorkers caps the generating goroutines; each may hold an 8 MiB buffer.
const maxWorkers = 8

// task is one region on its way through the pipeline.
type task struct {
	r    region
	buf  []byte        // the generated content, nil for zero regions
	done chan struct{} // closed when buf is filled
}

// generate produces the image as a sequence of emit calls; zero reports
// that p is all zeros and may be skipped by seeking. Regions are generated
// in parallel by up to GOMAXPROCS workers and emitted in order from the
// calling goroutine.
func generate(ctx context.Context, size int64, opts Options, emit func(p []byte, zero bool) error) error {
	if size < 0 || size > maxSize {
		return fmt.Errorf("volgen: size %d out of range [0, 1 PiB]", size)
	}
	weights, err := opts.Mix.weights()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	workers := min(runtime.GOMAXPROCS(0), maxWorkers)
	pending := make(chan *task, 2*workers) // in image order, for the emitter
	work := make(chan *task, workers)
	free := make(chan []byte, workers+2) // buffers, allocated on first use
	for range cap(free) {
		var buf []byte
		if p, ok := bufPool.Get().(*[]byte); ok {
			buf = *p
		}
		free <- buf
	}

	var wg sync.WaitGroup
	wg.Go(func() { // producer: lays out regions
		defer close(pending)
		defer close(work)
		l := newLayout(opts.Seed, weights)
		for l.pos < size {
			t := &task{r: l.next(), done: make(chan struct{})}
			if t.r.kind == kindZeros {
				close(t.done)
			} else {
				select {
				case t.buf = <-free:
				case <-ctx.Done():
					return
				}
				select {
				case work <- t:
				case <-ctx.Done():
					return
				}
			}
			select {
			case pending <- t:
			case <-ctx.Done():
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			var g generator
			for t := range work {
				if ctx.Err() == nil {
					t.buf = g.fill(t.buf, t.r, regionSeed(opts.Seed, t.r.index))
				}
				close(t.done)
			}
		})
	}

	err = emitAll(ctx, size, pending, free, emit)
	cancel()
	wg.Wait()
	close(free)
	for buf := range free {
		if buf != nil {
			bufPool.Put(&buf)
		}
	}
	return err
}

// bufPool keeps region buffers between calls; it holds *[]byte.
var bufPool sync.Pool

// emitAll emits the tasks of pending in order as they are done, returning
// their buffers to free.
func emitAll(ctx context.Context, size int64, pending <-chan *task, free chan<- []byte, emit func([]byte, bool) error) error {
	for t := range pending {
		select {
		case <-t.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(t.r.length, size-t.r.off)
		if t.r.kind == kindZeros {
			for n > 0 {
				k := min(n, int64(len(zeroBuf)))
				if err := emit(zeroBuf[:k], true); err != nil {
					return err
				}
				n -= k
			}
			continue
		}
		// The whole region was generated even if the image ends inside
		// it, so that smaller images are prefixes of larger ones.
		if err := emit(t.buf[:n], false); err != nil {
			return err
		}
		free <- t.buf // never blocks: the buffer came from free
	}
	return ctx.Err()
}

// region is one run of a single kind.
type region struct {
	off, length int64
	kind        kind
	index       uint64 // position in the sequence; seeds the content
}

// layout decides the sequence of regions.
type layout struct {
	rng     rand.PCG
	weights [numKinds]int64
	have    [numKinds]int64
	pos     int64
	index   uint64
}

func newLayout(seed int64, weights [numKinds]int64) *layout {
	s := uint64(seed)
	l := &layout{weights: weights}
	l.rng.Seed(splitmix(s^0x6c61796f7574), splitmix(s+0x9e3779b97f4a7c15))
	return l
}

// intN returns a number in [0, n) from rng's next output.
func intN(rng *rand.PCG, n int64) int64 {
	hi, _ := bits.Mul64(rng.Uint64(), uint64(n))
	return int64(hi)
}

// next returns the region at l.pos and advances past it.
func (l *layout) next() region {
	best, bestScore := kindText, int64(math.MinInt64)
	for k := range numKinds {
		w := l.weights[k]
		if w == 0 {
			continue
		}
		// How far this kind is behind its share, with jitter, in units of
		// 1/weightScale bytes. Fits in int64 for images up to maxSize.
		score := w*(l.pos+intN(&l.rng, jitter)) - l.have[k]*weightScale
		if score > bestScore {
			best, bestScore = k, score
		}
	}
	var length int64
	if best == kindZeros && intN(&l.rng, 4) != 0 {
		// An extent: reach the next 4 MiB boundary, cover one whole aligned
		// block, and end somewhere before the block after, so the length
		// stays within [4 MiB, 8 MiB].
		gap := (extentAlign - l.pos%extentAlign) % extentAlign
		tail := intN(&l.rng, (extentAlign-gap)/align+1) * align
		length = gap + extentAlign + tail
	} else {
		// Roughly log-uniform in [64 KiB, 8 MiB): pick a power-of-two
		// octave, then a uniform length within it.
		base := int64(minRegion) << intN(&l.rng, 7)
		length = base + intN(&l.rng, base/align)*align
	}
	r := region{off: l.pos, length: length, kind: best, index: l.index}
	l.pos += length
	l.have[best] += length
	l.index++
	return r
}

// regionSeed derives the seed of a region's content.
func regionSeed(seed int64, index uint64) [4]uint64 {
	s := splitmix(uint64(seed) ^ 0x726567696f6e)
	var out [4]uint64
	for i := range out {
		s = splitmix(s + index*0x9e3779b97f4a7c15 + uint64(i))
		out[i] = s
	}
	return out
}

// splitmix is the SplitMix64 finaliser: a bijective 64-bit mix.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// generator fills regions. Its zero value is ready to use; it is not
// safe for concurrent use.
type generator struct {
	pcg rand.PCG
	cha rand.ChaCha8
}

// slack is room past a region's end for a text line or record that
// crosses it; the excess is discarded.
const slack = 64 << 10

// fill generates region r's content into buf, allocating it if too small,
// and returns buf[:r.length].
func (g *generator) fill(buf []byte, r region, seed [4]uint64) []byte {
	if need := int(r.length) + slack; cap(buf) < need {
		buf = make([]byte, (need+1<<20-1)&^(1<<20-1)) // whole MiB, to be reused
	}
	p := buf[:r.length]
	switch r.kind {
	case kindText:
		g.pcg.Seed(seed[0], seed[1])
		fillText(p, &g.pcg)
	case kindBinary:
		g.pcg.Seed(seed[0], seed[1])
		fillBinary(p, &g.pcg)
	case kindRandom:
		var s [32]byte
		for i, x := range seed {
			for j := range 8 {
				s[i*8+j] = byte(x >> (8 * j))
			}
		}
		g.cha.Seed(s)
		_, _ = g.cha.Read(p) // never fails
	default:
		panic("volgen: unexpected region kind")
	}
	return p
}
