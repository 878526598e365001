// Package volgen generates realistic volume images for demos, tests and
// benchmarks.
//
// An image is a sequence of regions, each 64 KiB to 8 MiB long and 4 KiB
// aligned, of four kinds that stress a backup pipeline differently:
//
//   - text: log and source-code lines built from a word list, which zstd's
//     fastest level compresses about 3-5x;
//   - binary: executable-like data (struct tables with small integers,
//     skewed instruction bytes, symbol strings), about 2x;
//   - zeros: unallocated space, mostly extents that cover at least one
//     whole 4 MiB-aligned block, so whole chunks can be zero;
//   - random: incompressible bytes (compressed media, encrypted data).
//
// The kind of the next region is the one furthest behind its share of the
// [Mix], with some jitter, so the proportions hold even in small images
// while the order stays irregular. Everything derives from [Options.Seed]:
// the same seed and size give the same bytes on every platform and Go
// version that keeps math/rand/v2's PCG and ChaCha8 stable (they are
// specified), and an image is a prefix of any larger image with the same
// options.
package volgen
