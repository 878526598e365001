// Package zpack compresses what a process keeps or sends in memory (scan
// batches, a scan held for planning, a parent snapshot's directory
// objects) with zstd at its fastest level, with coders made once and
// shared: EncodeAll and DecodeAll are safe for concurrent use. Stored
// chunks have their own sealing (pkg/chunk).
package zpack

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

var encoder = sync.OnceValue(func() *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err) // only for invalid options
	}
	return enc
})

// Pack returns src compressed, in a slice of its own length: EncodeAll
// leaves room for all of src, which a caller that keeps many would hold.
func Pack(src []byte) []byte {
	packed := encoder().EncodeAll(src, nil)
	out := make([]byte, len(packed))
	copy(out, packed)
	return out
}

// decoders holds one decoder per bound on what it may unpack.
var decoders sync.Map // int -> *zstd.Decoder

// Unpack returns what Pack packed, refusing to unpack more than limit
// bytes (before allocating them).
func Unpack(src []byte, limit int) ([]byte, error) {
	d, ok := decoders.Load(limit)
	if !ok {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(uint64(limit)))
		if err != nil {
			return nil, fmt.Errorf("zpack: %w", err)
		}
		if d, ok = decoders.LoadOrStore(limit, dec); ok {
			dec.Close()
		}
	}
	return d.(*zstd.Decoder).DecodeAll(src, nil)
}
