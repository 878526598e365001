package volgen

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// words is the vocabulary of text regions, most frequent first: picks
// follow a Zipf distribution over this order, as words in real logs do.
var words = strings.Fields(`
the to of and a in is for on request with from at by not be this chunk
error file id ok read write server client node queue job time done new
start stop size data user key value open close request response status
connection timeout retry backup restore snapshot volume repository store
object bucket upload download index pack blob tree manifest worker host
config flush sync commit rollback lock unlock session token cache miss hit
load save delete list stat scan check verify hash compress decompress zstd
stream consumer publish subscribe ack nak pending inflight offset length
buffer pool alloc free memory disk network socket listen accept dial http
grpc handler route path method header body json yaml parse encode decode
invalid missing expired denied unavailable reset refused closed exceeded
limit rate backoff deadline context cancel shutdown graceful drain ready
healthy degraded leader follower replica cluster raft term vote election
log level debug info warn trace metric counter gauge histogram latency
bytes total count batch elapsed duration second minute hour daily weekly
schedule cron next previous attempt max min avg sum mean rows table column
query insert update select where order group limit join transaction
primary secondary shard partition segment compaction merge split range
`)

// zipfOffset flattens the head of the word distribution a little, so
// that "the the" is not the most common phrase.
const zipfOffset = 4

// zipf maps 12 random bits to a word index with P(i) proportional to
// 1/(i+zipfOffset), built with integer arithmetic so it is the same
// everywhere.
var zipf = func() [1 << 12]uint16 {
	var t [1 << 12]uint16
	var total uint64
	for i := range words {
		total += 1 << 20 / uint64(i+zipfOffset)
	}
	var cum uint64
	j := 0
	for i := range words {
		cum += 1 << 20 / uint64(i+zipfOffset)
		for end := int(cum * uint64(len(t)) / total); j < end; j++ {
			t[j] = uint16(i)
		}
	}
	for ; j < len(t); j++ {
		t[j] = uint16(len(words) - 1)
	}
	return t
}()

var (
	levels = [32]string{
		"INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ",
		"INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ",
		"INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ",
		"DEBUG", "DEBUG", "DEBUG", "DEBUG", "DEBUG", "DEBUG", "DEBUG",
		"WARN ", "WARN ", "ERROR",
	}
	goTypes = [8]string{"int", "string", "[]byte", "int64", "bool", "error", "*Config", "context.Context"}
)

// bitSource hands out a few random bits at a time from a PCG.
type bitSource struct {
	rng *rand.PCG
	v   uint64
	n   uint
}

// take returns k random bits, 1 <= k <= 32.
func (b *bitSource) take(k uint) uint64 {
	if b.n < k {
		b.refill()
	}
	x := b.v & (1<<k - 1)
	b.v >>= k
	b.n -= k
	return x
}

// refill is kept out of take so that take inlines.
//
//go:noinline
func (b *bitSource) refill() { b.v, b.n = b.rng.Uint64(), 64 }

// wordText holds each word padded to 16 bytes, so appending one is a
// fixed-size copy.
var wordText = func() [][16]byte {
	t := make([][16]byte, len(words))
	for i, w := range words {
		if len(w) > 16 {
			panic("volgen: word longer than 16 bytes: " + w)
		}
		copy(t[i][:], w)
	}
	return t
}()

// appendWord appends word i with a 16-byte copy into b's spare capacity.
func appendWord(b []byte, i int) []byte {
	b = slices.Grow(b, 16)
	n := len(b)
	*(*[16]byte)(b[n : n+16]) = wordText[i]
	return b[:n+len(words[i])]
}

// word returns a random word index, Zipf-distributed.
func (b *bitSource) word() int { return int(zipf[b.take(12)]) }

// textGen writes log or source lines.
type textGen struct {
	bitSource
	sec    int64  // current log second
	ms     uint64 // milliseconds into sec
	prefix []byte // "2006-01-02T15:04:05." for sec
	// messages holds the region's numMessages log messages (identifiers,
	// for source) back to back; message i is messages[starts[i]:starts[i+1]].
	messages []byte
	starts   [numMessages + 1]int
	indent   int // source nesting depth
}

// numMessages is the number of distinct log messages in a region, like
// the log statements of a program.
const numMessages = 64

// fillText fills p with lines; the last one is cut at len(p). It appends
// past len(p) into p's spare capacity, which must be at least one line.
func fillText(p []byte, rng *rand.PCG) {
	g := textGen{bitSource: bitSource{rng: rng}}
	source := g.take(4) < 5 // about a third of text regions look like code
	g.fill(p, source)
}

func (g *textGen) fill(p []byte, source bool) {
	dst := p[:0]
	if source {
		// A file reuses a few identifiers; draw them up front.
		g.messages = make([]byte, 0, numMessages*24)
		for i := range numMessages {
			g.starts[i] = len(g.messages)
			g.messages = appendWord(g.messages, g.word())
			if g.take(1) == 0 {
				g.messages = g.exported(g.messages)
			}
		}
		g.starts[numMessages] = len(g.messages)
		for len(dst) < len(p) {
			dst = g.sourceLine(dst)
		}
		return
	}
	g.sec = 1_700_000_000 + int64(g.take(25))
	g.prefix = time.Unix(g.sec, 0).UTC().AppendFormat(nil, "2006-01-02T15:04:05.")
	g.messages = make([]byte, 0, numMessages*64)
	for i := range numMessages {
		g.starts[i] = len(g.messages)
		for n := 3 + g.take(3); n > 0; n-- {
			g.messages = append(g.messages, ' ')
			g.messages = appendWord(g.messages, g.word())
		}
	}
	g.starts[numMessages] = len(g.messages)
	for len(dst) < len(p) {
		dst = g.logLine(dst)
	}
}

// logLine appends a line like
// "2023-11-14T22:13:20.042Z INFO  compactor[3]: flush the segment id=7f3a9c2e bytes=48213".
func (g *textGen) logLine(b []byte) []byte {
	g.ms += g.take(7)
	if g.ms >= 1000 {
		g.sec += int64(g.ms / 1000)
		g.ms %= 1000
		g.prefix = time.Unix(g.sec, 0).UTC().AppendFormat(g.prefix[:0], "2006-01-02T15:04:05.")
	}
	b = append(b, g.prefix...)
	b = append(b, byte('0'+g.ms/100), byte('0'+g.ms/10%10), byte('0'+g.ms%10), 'Z', ' ')
	b = append(b, levels[g.take(5)]...)
	b = append(b, ' ')
	b = appendWord(b, g.word()/2+40) // components: mid-frequency words
	if g.take(1) == 0 {
		b = append(b, '[')
		b = strconv.AppendUint(b, g.take(4), 10)
		b = append(b, ']')
	}
	b = append(b, ':')
	if g.take(1) == 0 {
		m := g.take(6) & g.take(6) // biased to low indexes: some messages are frequent
		b = append(b, g.messages[g.starts[m]:g.starts[m+1]]...)
	} else {
		for n := 3 + g.take(3); n > 0; n-- {
			b = append(b, ' ')
			b = appendWord(b, g.word())
		}
	}
	for n := g.take(2); n > 0; n-- {
		b = append(b, ' ')
		b = appendWord(b, g.word()/2+20) // keys: no "the="
		b = append(b, '=')
		switch g.take(2) {
		case 0:
			b = strconv.AppendUint(b, g.take(uint(4+g.take(4))), 10)
		case 1:
			b = appendHex(b, g.take(32), 8)
		case 2:
			b = strconv.AppendUint(b, g.take(10), 10)
			b = append(b, '.')
			b = strconv.AppendUint(b, g.take(3), 10)
			b = append(b, "ms"...)
		default:
			b = appendWord(b, g.word())
		}
	}
	return append(b, '\n')
}

// sourceLine appends a line of Go-like code.
func (g *textGen) sourceLine(b []byte) []byte {
	t := g.take(4)
	if t == 7 {
		if g.indent > 0 {
			b = append(b, "}\n"...)
		}
		b = append(b, "\nfunc (x *"...)
		b = g.exported(b)
		b = append(b, ") "...)
		b = g.exported(b)
		b = append(b, "(ctx context.Context, "...)
		b = g.ident(b)
		b = append(b, ' ')
		b = append(b, goTypes[g.take(3)]...)
		g.indent = 1
		return append(b, ") error {\n"...)
	}
	if t == 14 {
		return append(b, '\n') // blank line
	}
	if t == 15 && g.indent > 0 {
		g.indent--
	}
	for range g.indent {
		b = append(b, '\t')
	}
	switch t {
	case 0, 1:
		b = g.ident(b)
		b = append(b, " := "...)
		b = g.ident(b)
		b = append(b, '.')
		b = g.exported(b)
		b = append(b, '(')
		b = g.ident(b)
		b = append(b, ", "...)
		b = strconv.AppendUint(b, g.take(8), 10)
		b = append(b, ')')
	case 2:
		b = append(b, "if err != nil {"...)
		if g.take(1) == 0 {
			b = append(b, '\n')
			for range g.indent + 1 {
				b = append(b, '\t')
			}
			b = append(b, "return err\n"...)
			for range g.indent {
				b = append(b, '\t')
			}
			b = append(b, '}')
		} else {
			g.indent++
		}
	case 3:
		b = append(b, "return nil, fmt.Errorf(\""...)
		b = appendWord(b, g.word())
		b = append(b, ' ')
		b = appendWord(b, g.word())
		b = append(b, " %s: %w\", "...)
		b = g.ident(b)
		b = append(b, ", err)"...)
	case 4:
		b = append(b, "for _, "...)
		b = g.ident(b)
		b = append(b, " := range "...)
		b = g.ident(b)
		b = append(b, ".items {"...)
		g.indent++
	case 5, 6:
		b = append(b, "// "...)
		b = g.exported(b)
		for n := 2 + g.take(3); n > 0; n-- {
			b = append(b, ' ')
			b = appendWord(b, g.word())
		}
		b = append(b, '.')
	case 8:
		b = g.ident(b)
		b = append(b, '.')
		b = g.exported(b)
		b = append(b, " = "...)
		b = strconv.AppendUint(b, g.take(uint(1+g.take(4))), 10)
	case 9:
		b = append(b, "case "...)
		b = strconv.AppendUint(b, g.take(6), 10)
		b = append(b, ':')
	case 10:
		b = append(b, "slog.Debug(\""...)
		b = appendWord(b, g.word())
		b = append(b, "\", \""...)
		b = appendWord(b, g.word())
		b = append(b, "\", "...)
		b = g.ident(b)
		b = append(b, ')')
	case 11:
		b = append(b, "var "...)
		b = g.ident(b)
		b = append(b, ' ')
		b = append(b, goTypes[g.take(3)]...)
	case 12:
		b = append(b, "return "...)
		b = g.ident(b)
		b = append(b, ", nil"...)
	case 13:
		b = append(b, "defer "...)
		b = g.ident(b)
		b = append(b, ".Close()"...)
	default:
		b = append(b, '}')
	}
	return append(b, '\n')
}

// ident appends one of the file's identifiers, some much more often than
// others.
func (g *textGen) ident(b []byte) []byte {
	m := g.take(6) & g.take(6)
	return append(b, g.messages[g.starts[m]:g.starts[m+1]]...)
}

// exported appends a capitalised word.
func (g *textGen) exported(b []byte) []byte {
	n := len(b)
	b = appendWord(b, g.word())
	if c := b[n]; 'a' <= c && c <= 'z' {
		b[n] = c - ('a' - 'A')
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendHex appends the low n hex digits of v.
func appendHex(b []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, hexDigits[v>>(4*uint(i))&0xf])
	}
	return b
}
