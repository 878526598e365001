package keyring_test

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
)

// Run: go test -run '^$' -bench . -cpu 1 ./pkg/keyring/
// The ratios that matter (docs/benchmarks.md): ChunkID / SHA256 (the hash
// that chunk IDs replace), Seal and Open against SHA256 (the other per-byte
// cost of a backup and a restore).

var benchSizes = []int{4 << 10, 4 << 20}

func benchData(b *testing.B, n int) []byte {
	b.Helper()
	data := make([]byte, n)
	rand.Read(data)
	return data
}

func BenchmarkSHA256(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			data := benchData(b, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sha256.Sum256(data)
			}
		})
	}
}

func BenchmarkChunkID(b *testing.B) {
	k := newKeys(b)
	for _, n := range benchSizes {
		data := benchData(b, n)
		b.Run(fmt.Sprintf("Hasher/%dKiB", n>>10), func(b *testing.B) {
			h := k.NewHasher()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				h.Sum(data)
			}
		})
		b.Run(fmt.Sprintf("ChunkID/%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				k.ChunkID(data)
			}
		})
	}
}

// BenchmarkSeal seals in place, as pkg/chunk will: Next, then Seal over the
// payload where it lies.
func BenchmarkSeal(b *testing.B) {
	k := newKeys(b)
	s := newSealer(b, &k.WriteKey)
	hdr := make([]byte, 104)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			data := benchData(b, n)
			buf := make([]byte, n, n+keyring.Overhead)
			id := k.ChunkID(data)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				env := s.Next()
				buf = env.Seal(buf[:0], id, buf[:n], hdr)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	k := newKeys(b)
	s, o := newSealer(b, &k.WriteKey), keyring.NewOpener(k.Private)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			obj := seal(b, s, &k.WriteKey, benchData(b, n))
			dst := make([]byte, 0, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = obj.open(dstOpener{o, dst[:0]}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// dstOpener opens into a reused buffer.
type dstOpener struct {
	o   *keyring.Opener
	dst []byte
}

func (d dstOpener) Open(_ []byte, eph [keyring.EphemeralSize]byte, id [keyring.KeySize]byte, nonce [keyring.NonceSize]byte, ct, aad []byte) ([]byte, error) {
	return d.o.Open(d.dst, eph, id, nonce, ct, aad)
}

func BenchmarkStaging(b *testing.B) {
	k := newKeys(b)
	n := 4 << 20
	data := benchData(b, n)
	buf := make([]byte, 0, n+keyring.StagingOverhead)
	aad := []byte("staging/job/00000001")
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = k.SealStaging(buf[:0], "job", data, aad); err != nil {
			b.Fatal(err)
		}
	}
}
