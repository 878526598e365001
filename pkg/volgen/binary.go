package volgen

import (
	"encoding/binary"
	"math/rand/v2"
)

// opcodes maps 8 random bits to a byte with roughly the skew of x86-64
// machine code: a few bytes (REX prefixes, MOV, zero displacements) are
// very common, the rest appear now and then.
var opcodes = func() [256]byte {
	common := []struct {
		b byte
		n int
	}{
		{0x00, 28}, {0x48, 20}, {0x89, 12}, {0x8b, 12}, {0xff, 10}, {0xe8, 6},
		{0x0f, 6}, {0x24, 6}, {0x44, 6}, {0x85, 5}, {0xc0, 5}, {0x74, 5},
		{0x75, 5}, {0x83, 5}, {0x01, 4}, {0x8d, 4}, {0x4c, 4}, {0x45, 4},
		{0xc3, 3}, {0x31, 3}, {0x49, 3}, {0x10, 3}, {0x08, 3}, {0x20, 3},
		{0x41, 3}, {0x5d, 2}, {0x55, 2}, {0xe5, 2}, {0xeb, 2}, {0x39, 2},
	}
	var t [256]byte
	i := 0
	for _, c := range common {
		for range c.n {
			t[i] = c.b
			i++
		}
	}
	// The remaining entries spread over all byte values (167 is odd, so
	// i*167 mod 256 visits distinct bytes).
	for ; i < len(t); i++ {
		t[i] = byte(i * 167)
	}
	return t
}()

// fillBinary fills p with executable-like data: a sequence of 4-68 KiB
// blocks of struct tables, instruction-like bytes, symbol strings and
// padding.
func fillBinary(p []byte, rng *rand.PCG) {
	g := bitSource{rng: rng}
	for len(p) > 0 {
		n := min(len(p), (4+int(g.take(6)))<<10)
		switch s := g.take(5); {
		case s < 14:
			records(p[:n], &g)
		case s < 27:
			code(p[:n], &g)
		case s < 30:
			symbols(p[:n], &g)
		default:
			n = min(n, 256<<g.take(3)) // 256 B - 32 KiB of alignment padding
			pad := byte(0)
			if g.take(1) == 0 {
				pad = 0xcc // int3, as linkers pad code
			}
			for i := range p[:n] {
				p[i] = pad
			}
		}
		p = p[n:]
	}
}

// column kinds of a struct table.
const (
	colSmall   = iota // 0-15, flags and enum-like fields
	colCounter        // incrementing id
	colZero           // reserved, padding
	colEnum           // one of four values fixed per table
	colPointer        // base + index*record size, like a relocated pointer
	colRandom         // hash or checksum
	colPair           // two small uint16
	colSmall2
)

// records fills b with a table of fixed-size structs of 4-byte columns.
func records(b []byte, g *bitSource) {
	var cols [16]uint8
	ncol := 4 + int(g.take(3))*2 // 4-18 columns: 16-72 byte records
	ncol = min(ncol, len(cols))
	size := ncol * 4
	for i := range cols[:ncol] {
		cols[i] = uint8(g.take(3))
	}
	base := uint32(g.take(32)) &^ 0xfff
	enum := [4]uint32{uint32(g.take(8)), uint32(g.take(16)), uint32(g.take(4)), uint32(g.take(12))}
	counter := uint32(g.take(16))
	i := uint32(0)
	for ; len(b) >= size; b = b[size:] {
		for c, kind := range cols[:ncol] {
			var v uint32
			switch kind {
			case colSmall, colSmall2:
				v = uint32(g.take(4))
			case colCounter:
				v = counter + i
			case colZero:
			case colEnum:
				v = enum[g.take(2)]
			case colPointer:
				v = base + i*uint32(size)
			case colRandom:
				v = uint32(g.take(32))
			case colPair:
				v = uint32(g.take(3)) | uint32(g.take(5))<<16
			}
			le.PutUint32(b[c*4:], v)
		}
		i++
	}
	clear(b)
}

// code fills b with instruction-like bytes: runs of skewed single bytes,
// with frequent repeats of recent sequences (prologues, common moves).
func code(b []byte, g *bitSource) {
	i := 0
	for i+16 <= len(b) {
		v := g.rng.Uint64()
		if i >= 64 && v&3 == 0 {
			// Repeat 8 or 16 bytes from 16 B to 1 KiB back.
			from := i - min(16+int(v>>8&1023), i)
			le.PutUint64(b[i:], le.Uint64(b[from:]))
			i += 8
			if v&4 != 0 {
				le.PutUint64(b[i:], le.Uint64(b[from+8:]))
				i += 8
			}
			continue
		}
		// 7 bytes, one from each remaining byte of v.
		le.PutUint64(b[i:], uint64(opcodes[byte(v>>8)])|
			uint64(opcodes[byte(v>>16)])<<8|
			uint64(opcodes[byte(v>>24)])<<16|
			uint64(opcodes[byte(v>>32)])<<24|
			uint64(opcodes[byte(v>>40)])<<32|
			uint64(opcodes[byte(v>>48)])<<40|
			uint64(opcodes[byte(v>>56)])<<48)
		i += 7
	}
	for ; i < len(b); i++ {
		b[i] = opcodes[g.take(8)]
	}
}

var le = binary.LittleEndian

// symbols fills b with NUL-terminated symbol names, as in a string table.
func symbols(b []byte, g *bitSource) {
	t := textGen{bitSource: *g}
	buf := b[:0]
	for len(b)-len(buf) >= 128 { // room for the longest name
		buf = append(buf, "github.com/bulkbackup/"...)
		buf = appendWord(buf, t.word())
		buf = append(buf, '.')
		buf = t.exported(buf)
		buf = t.exported(buf)
		buf = append(buf, 0)
	}
	clear(b[len(buf):])
	*g = t.bitSource
}
