// Package layout is the geometry of chunks: the sizes a chunk may have and
// how a volume is cut into fixed-size, 4096-aligned ranges. It is pure: no
// I/O, no clocks. The manifest validates against it and the planners cut
// work with it.
package layout

import (
	"fmt"
	"iter"
)

const (
	// BlockSize is the unit chunk sizes are a multiple of, the patent's block.
	BlockSize = 4096
	// DefaultChunkSize is the chunk size used when none is given. It was
	// chosen by the chunk-size sweep in docs/benchmarks.md: large enough to
	// amortise per-chunk costs (a message, a PUT, a manifest entry), small
	// enough to fit one NATS message and keep many chunks in flight.
	DefaultChunkSize = 4 << 20
	// MaxChunkSize bounds the chunk size: raw chunks are held in memory
	// several times over on their way through the fleet.
	MaxChunkSize = 256 << 20
)

// Range is one chunk of a volume: the bytes [Offset, Offset+Length).
type Range struct {
	Index  int
	Offset int64
	Length int64
}

// CheckChunkSize returns an error unless size is a positive multiple of
// BlockSize no larger than MaxChunkSize.
func CheckChunkSize(size int64) error {
	if size <= 0 || size%BlockSize != 0 || size > MaxChunkSize {
		return fmt.Errorf("chunk size %d: must be a multiple of %d bytes between %d and %d", size, BlockSize, BlockSize, MaxChunkSize)
	}
	return nil
}

// Count returns how many chunks of chunkSize cover a volume of size bytes,
// without overflowing for any size.
func Count(size, chunkSize int64) int {
	if size <= 0 || chunkSize <= 0 {
		return 0
	}
	n := size / chunkSize
	if size%chunkSize != 0 {
		n++
	}
	return int(n)
}

// At returns chunk index of a volume of size bytes. The last chunk is short
// when size is not a multiple of chunkSize.
func At(index int, size, chunkSize int64) Range {
	off := int64(index) * chunkSize
	return Range{Index: index, Offset: off, Length: min(chunkSize, size-off)}
}

// Volume yields the chunks of a volume of size bytes in order. An empty
// volume yields none.
func Volume(size, chunkSize int64) iter.Seq[Range] {
	return func(yield func(Range) bool) {
		for i := range Count(size, chunkSize) {
			if !yield(At(i, size, chunkSize)) {
				return
			}
		}
	}
}
