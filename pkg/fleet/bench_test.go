package fleet_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

const benchVolume = 256 << 20

// benchSource returns the volume the benchmarks read and its size: the
// file named by $BULK_BENCH_VOLUME (scripts/bench.sh passes its ext4 image,
// so the ceiling is measured on the same data as the backups), else a
// generated 256 MiB volume.
func benchSource(b *testing.B) (string, int64) {
	b.Helper()
	if path := os.Getenv("BULK_BENCH_VOLUME"); path != "" {
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		return path, fi.Size()
	}
	path := filepath.Join(b.TempDir(), "vol.img")
	if err := volgen.WriteFile(b.Context(), path, benchVolume, volgen.Options{Seed: 1}); err != nil {
		b.Fatal(err)
	}
	return path, benchVolume
}

// BenchmarkFleetBackup is the whole path in one process: reader, NATS,
// compressors, a directory repository. Each iteration backs up into a fresh
// repository, so every chunk is compressed and written.
func BenchmarkFleetBackup(b *testing.B) {
	src, size := benchSource(b)
	bnd := setup(b, storeurl.S3Options{})
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		repo := filepath.Join(b.TempDir(), "repo")
		if ev := bnd.backup(b, src, repo, layout.DefaultChunkSize); ev.State != queue.StateSucceeded {
			b.Fatalf("backup %s: %s", ev.State, ev.Error)
		}
	}
}

// BenchmarkVolumeIncremental backs up an unchanged volume again: every
// chunk is read and hashed, compared with the parent snapshot's, and
// nothing is compressed or stored.
func BenchmarkVolumeIncremental(b *testing.B) {
	src, size := benchSource(b)
	bnd := setup(b, storeurl.S3Options{})
	repo := filepath.Join(b.TempDir(), "repo")
	if ev := bnd.backup(b, src, repo, layout.DefaultChunkSize); ev.State != queue.StateSucceeded {
		b.Fatalf("first backup %s: %s", ev.State, ev.Error)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		ev := bnd.backup(b, src, repo, layout.DefaultChunkSize)
		if ev.State != queue.StateSucceeded || ev.Stats.NewBytes != 0 {
			b.Fatalf("unchanged backup %s: %s, %d new bytes", ev.State, ev.Error, ev.Stats.NewBytes)
		}
	}
}

// BenchmarkFleetRestore restores a volume from a directory repository to
// a file: every chunk read, decompressed, checked against its hash and
// written (directly, around the page cache) at its offset.
func BenchmarkFleetRestore(b *testing.B) {
	src, size := benchSource(b)
	bnd := setup(b, storeurl.S3Options{})
	repo := filepath.Join(b.TempDir(), "repo")
	ev := bnd.backup(b, src, repo, layout.DefaultChunkSize)
	if ev.State != queue.StateSucceeded {
		b.Fatalf("backup %s: %s", ev.State, ev.Error)
	}
	target := filepath.Join(b.TempDir(), "restored.img")
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
			b.Fatal(err)
		}
		if ev := bnd.restore(b, repo, ev.SnapshotID, target); ev.State != queue.StateSucceeded {
			b.Fatalf("restore %s: %s", ev.State, ev.Error)
		}
	}
}

// BenchmarkCompressCeiling is the in-memory ceiling the fleet is measured
// against: the same chunks, already in memory, hashed and sealed at the
// same level by one goroutine per CPU, with nothing else.
func BenchmarkCompressCeiling(b *testing.B) {
	src, _ := benchSource(b)
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	sealer, err := chunk.NewSealer(chunk.LevelFastest)
	if err != nil {
		b.Fatal(err)
	}
	var chunks [][]byte
	for r := range layout.Volume(int64(len(data)), layout.DefaultChunkSize) {
		chunks = append(chunks, data[r.Offset:r.Offset+r.Length])
	}
	workers := runtime.GOMAXPROCS(0)
	bufs := make([][]byte, workers)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(chunks); i += workers {
					c := chunks[i]
					if chunk.IsZero(c) {
						continue
					}
					bufs[w] = sealer.Seal(bufs[w][:0], chunk.Sum(c), c)
				}
			})
		}
		wg.Wait()
	}
}

// BenchmarkTreeIncremental backs up an unchanged tree again: the scan, the
// comparison with the parent snapshot and the new manifest, no file read.
// The tree is $BULK_BENCH_TREE (scripts/bench.sh passes its tree), else
// 5,000 generated files. It reports files per second.
func BenchmarkTreeIncremental(b *testing.B) {
	src := os.Getenv("BULK_BENCH_TREE")
	if src == "" {
		src = b.TempDir()
		for i := range 5000 {
			dir := filepath.Join(src, fmt.Sprintf("d%03d", i%100))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), []byte(strings.Repeat("x", i%4096)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	bnd := setup(b, storeurl.S3Options{})
	repo := filepath.Join(b.TempDir(), "repo")
	first := bnd.backupFiles(b, src, repo)
	if first.State != queue.StateSucceeded {
		b.Fatalf("first backup %s: %s", first.State, first.Error)
	}
	for b.Loop() {
		ev := bnd.backupFiles(b, src, repo)
		if ev.State != queue.StateSucceeded || ev.Stats.NewBytes != 0 {
			b.Fatalf("unchanged backup %s: %s, %d new bytes", ev.State, ev.Error, ev.Stats.NewBytes)
		}
	}
	b.ReportMetric(float64(first.Stats.Files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}
