package plan_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/plan"
)

// part is shorthand for a plan.Part in tables: file, file offset, length,
// pack offset.
func part(file int, off, length, packOff int64) plan.Part {
	return plan.Part{File: file, Offset: off, Length: length, PackOffset: packOff}
}

func pack(parts ...plan.Part) plan.Pack {
	p := plan.Pack{Parts: parts}
	for _, x := range parts {
		p.Length += x.Length
	}
	return p
}

func TestPacks(t *testing.T) {
	t.Parallel()
	const cs = 8192
	tests := []struct {
		name     string
		sizes    []int64
		maxParts int
		want     []plan.Pack
	}{
		{"no files", nil, 0, nil},
		{"only empty files", []int64{0, 0, 0}, 0, nil},
		{"empty files take no room", []int64{0, 5, 0, 7, 0}, 0, []plan.Pack{
			pack(part(1, 0, 5, 0), part(3, 0, 7, 5)),
		}},
		{"one byte", []int64{1}, 0, []plan.Pack{pack(part(0, 0, 1, 0))}},
		{"exactly chunk size", []int64{cs}, 0, []plan.Pack{pack(part(0, 0, cs, 0))}},
		{"chunk size minus one", []int64{cs - 1}, 0, []plan.Pack{pack(part(0, 0, cs-1, 0))}},
		{"chunk size plus one", []int64{cs + 1}, 0, []plan.Pack{
			pack(part(0, 0, cs, 0)),
			pack(part(0, cs, 1, 0)),
		}},
		{"two chunks and five", []int64{2*cs + 5}, 0, []plan.Pack{
			pack(part(0, 0, cs, 0)),
			pack(part(0, cs, cs, 0)),
			pack(part(0, 2*cs, 5, 0)),
		}},
		{"small files fill a pack exactly", []int64{cs / 2, cs / 4, cs / 4}, 0, []plan.Pack{
			pack(part(0, 0, cs/2, 0), part(1, 0, cs/4, cs/2), part(2, 0, cs/4, 3*cs/4)),
		}},
		{"a small file that does not fit starts a pack, whole", []int64{cs - 1, 2}, 0, []plan.Pack{
			pack(part(0, 0, cs-1, 0)),
			pack(part(1, 0, 2, 0)),
		}},
		{"a tail shares a pack with its neighbours", []int64{3, cs + 1, cs - 4}, 0, []plan.Pack{
			pack(part(1, 0, cs, 0)),
			pack(part(0, 0, 3, 0), part(1, cs, 1, 3), part(2, 0, cs-4, 4)),
		}},
		{"whole chunks at chunk-aligned offsets wherever the file lies", []int64{100, 2 * cs, 50}, 0, []plan.Pack{
			pack(part(1, 0, cs, 0)),
			pack(part(1, cs, cs, 0)),
			pack(part(0, 0, 100, 0), part(2, 0, 50, 100)),
		}},
		{"many tiny files respect maxParts", []int64{1, 1, 1, 1, 1, 1, 1}, 3, []plan.Pack{
			pack(part(0, 0, 1, 0), part(1, 0, 1, 1), part(2, 0, 1, 2)),
			pack(part(3, 0, 1, 0), part(4, 0, 1, 1), part(5, 0, 1, 2)),
			pack(part(6, 0, 1, 0)),
		}},
		{"maxParts one", []int64{1, 2, 0, 3}, 1, []plan.Pack{
			pack(part(0, 0, 1, 0)),
			pack(part(1, 0, 2, 0)),
			pack(part(3, 0, 3, 0)),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := plan.Packs(tt.sizes, cs, tt.maxParts)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Packs(%v, %d, %d) =\n%v\nwant\n%v", tt.sizes, cs, tt.maxParts, got, tt.want)
			}
			checkPacks(t, tt.sizes, cs, tt.maxParts, got)
		})
	}
}

// TestPacksDefaultMaxParts checks that maxParts 0 means MaxPackParts.
func TestPacksDefaultMaxParts(t *testing.T) {
	t.Parallel()
	sizes := make([]int64, 2*plan.MaxPackParts+1)
	for i := range sizes {
		sizes[i] = 1
	}
	got := plan.Packs(sizes, 1<<20, 0)
	var lens []int
	for _, p := range got {
		lens = append(lens, len(p.Parts))
	}
	if want := []int{plan.MaxPackParts, plan.MaxPackParts, 1}; !reflect.DeepEqual(lens, want) {
		t.Fatalf("parts per pack = %v, want %v", lens, want)
	}
	checkPacks(t, sizes, 1<<20, 0, got)
}

// TestPacksInvariants checks the layout of random size lists: every byte of
// every file in exactly one place, each file's pieces in file order, packs
// within bounds and filled greedily, whole chunks alone, and the same
// result every time.
func TestPacksInvariants(t *testing.T) {
	t.Parallel()
	const cs = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		sizes := make([]int64, rng.IntN(60))
		for i := range sizes {
			switch rng.IntN(6) {
			case 0:
				sizes[i] = 0
			case 1:
				sizes[i] = rng.Int64N(16) + 1
			case 2:
				sizes[i] = rng.Int64N(cs) + 1
			case 3:
				sizes[i] = cs + rng.Int64N(3) - 1 // cs-1, cs, cs+1
			default:
				sizes[i] = rng.Int64N(5 * cs)
			}
		}
		maxParts := []int{0, 1, 2, 5}[rng.IntN(4)]
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			got := plan.Packs(sizes, cs, maxParts)
			checkPacks(t, sizes, cs, maxParts, got)
			if again := plan.Packs(sizes, cs, maxParts); !reflect.DeepEqual(again, got) {
				t.Fatalf("Packs(%v) differs from one call to the next", sizes)
			}
		})
	}
}

func checkPacks(t *testing.T, sizes []int64, cs int64, maxParts int, packs []plan.Pack) {
	t.Helper()
	if maxParts <= 0 {
		maxParts = plan.MaxPackParts
	}
	next := make([]int64, len(sizes)) // the next file offset each file's pieces must start at
	for i, p := range packs {
		if len(p.Parts) == 0 || len(p.Parts) > maxParts {
			t.Fatalf("sizes %v: pack %d has %d parts, want 1 to %d", sizes, i, len(p.Parts), maxParts)
		}
		if p.Length <= 0 || p.Length > cs {
			t.Fatalf("sizes %v: pack %d is %d bytes, want 1 to %d", sizes, i, p.Length, cs)
		}
		var at int64
		for j, x := range p.Parts {
			if x.File < 0 || x.File >= len(sizes) {
				t.Fatalf("sizes %v: pack %d part %d names file %d", sizes, i, j, x.File)
			}
			if x.PackOffset != at {
				t.Fatalf("sizes %v: pack %d part %d at pack offset %d, want %d (contiguous)", sizes, i, j, x.PackOffset, at)
			}
			if x.Length <= 0 {
				t.Fatalf("sizes %v: pack %d part %d is %d bytes", sizes, i, j, x.Length)
			}
			if x.Offset != next[x.File] {
				t.Fatalf("sizes %v: pack %d part %d covers file %d from %d, want from %d (each byte once, in order)", sizes, i, j, x.File, x.Offset, next[x.File])
			}
			if x.Length == cs && x.Offset%cs == 0 && len(p.Parts) != 1 {
				t.Fatalf("sizes %v: pack %d shares whole chunk [%d,+%d) of file %d", sizes, i, x.Offset, x.Length, x.File)
			}
			if x.Length < cs && x.Offset+x.Length != sizes[x.File] {
				t.Fatalf("sizes %v: pack %d part %d is a short piece [%d,+%d) of file %d but not its tail (size %d)", sizes, i, j, x.Offset, x.Length, x.File, sizes[x.File])
			}
			next[x.File] += x.Length
			at += x.Length
		}
		if at != p.Length {
			t.Fatalf("sizes %v: pack %d parts hold %d bytes, Length says %d", sizes, i, at, p.Length)
		}
	}
	for f, size := range sizes {
		if next[f] != size {
			t.Fatalf("sizes %v: file %d has %d of its %d bytes packed", sizes, f, next[f], size)
		}
	}
	// Greedy: a pack of tails is closed only when the next tail does not
	// fit or the pack is full.
	var tails []plan.Pack
	for _, p := range packs {
		if len(p.Parts) == 1 && p.Length == cs && p.Parts[0].Offset%cs == 0 {
			continue // a whole chunk of a file
		}
		tails = append(tails, p)
	}
	for i := 0; i+1 < len(tails); i++ {
		p, first := tails[i], tails[i+1].Parts[0]
		if len(p.Parts) < maxParts && p.Length+first.Length <= cs {
			t.Fatalf("sizes %v: a pack of %d bytes and %d parts was closed, yet the next %d-byte piece fits", sizes, p.Length, len(p.Parts), first.Length)
		}
	}
}

func ExamplePacks() {
	for _, p := range plan.Packs([]int64{100, 0, 9000, 50}, 4096, 0) {
		fmt.Println(p.Length, p.Parts)
	}
	// Output:
	// 4096 [{2 0 4096 0}]
	// 4096 [{2 4096 4096 0}]
	// 958 [{0 0 100 0} {2 8192 808 100} {3 0 50 908}]
}
