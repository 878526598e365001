package plan

import (
	"fmt"
	"sort"
	"sync"

	"github.com/bulkbackup/bulkbackup/pkg/internal/zpack"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// Scan holds a tree's scan, its entries in walk order, a batch at a time
// in a compact binary form (manifest.AppendEntries), compressed: about 15
// bytes an entry rather than the 230 of a decoded one, so that a backup of
// millions of files does not hold them all decoded. A backup walks it
// twice (Files, Build) and decodes what a pack's pieces name in between.
type Scan struct {
	batches [][]byte
	starts  []int // each batch's first entry
	n       int

	mu     sync.Mutex
	cached [2]decodedBatch // the batches decoded last, for Pieces
}

// decodedBatch is batch index's entries, decoded.
type decodedBatch struct {
	index   int
	entries []manifest.Entry
}

// NewScan returns a scan holding entries, a batch of batchLen at a time
// (all at once for 0).
func NewScan(entries []manifest.Entry, batchLen int) (*Scan, error) {
	s := &Scan{}
	if batchLen <= 0 {
		batchLen = max(len(entries), 1)
	}
	for lo := 0; lo < len(entries); lo += batchLen {
		if err := s.Add(entries[lo:min(lo+batchLen, len(entries))]); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add appends the next entries of the scan, which have no content.
func (s *Scan) Add(entries []manifest.Entry) error {
	p, err := PackEntries(entries)
	if err != nil {
		return err
	}
	s.AddPacked(p)
	return nil
}

// PackedEntries are entries packed as a Scan holds them (PackEntries),
// so that a batch can be packed as it arrives and added later, in order.
type PackedEntries struct {
	packed []byte
	count  int
}

// PackEntries packs entries, which have no content, for AddPacked. Safe
// for concurrent use.
func PackEntries(entries []manifest.Entry) (PackedEntries, error) {
	raw, err := manifest.AppendEntries(nil, entries)
	if err != nil {
		return PackedEntries{}, fmt.Errorf("scan: %w", err)
	}
	return PackedEntries{packed: zpack.Pack(raw), count: len(entries)}, nil
}

// Len returns how many entries p holds.
func (p PackedEntries) Len() int { return p.count }

// AddPacked appends the next entries of the scan, packed.
func (s *Scan) AddPacked(p PackedEntries) {
	if p.count == 0 {
		return
	}
	s.batches = append(s.batches, p.packed)
	s.starts = append(s.starts, s.n)
	s.n += p.count
}

// Len returns how many entries the scan holds.
func (s *Scan) Len() int { return s.n }

// Each calls f with each entry in order and its index, and stops at the
// first error f or decoding returns. f may change the entry: only its
// call sees it.
func (s *Scan) Each(f func(i int, e *manifest.Entry) error) error {
	for b := range s.batches {
		entries, err := s.decode(b)
		if err != nil {
			return err
		}
		for j := range entries {
			if err := f(s.starts[b]+j, &entries[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Entry returns entry i, decoding its batch unless it was one of the last
// two asked for. Safe for concurrent use.
func (s *Scan) Entry(i int) (manifest.Entry, error) {
	if i < 0 || i >= s.n {
		return manifest.Entry{}, fmt.Errorf("scan: entry %d of %d", i, s.n)
	}
	b := sort.SearchInts(s.starts, i+1) - 1
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cached {
		if c.entries != nil && c.index == b {
			return c.entries[i-s.starts[b]], nil
		}
	}
	entries, err := s.decode(b)
	if err != nil {
		return manifest.Entry{}, err
	}
	s.cached[1], s.cached[0] = s.cached[0], decodedBatch{index: b, entries: entries}
	return entries[i-s.starts[b]], nil
}

// decode returns batch b's entries.
func (s *Scan) decode(b int) ([]manifest.Entry, error) {
	raw, err := zpack.Unpack(s.batches[b], manifest.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("scan: batch %d: %w", b, err)
	}
	entries, err := manifest.DecodeEntries(raw)
	if err != nil {
		return nil, fmt.Errorf("scan: batch %d: %w", b, err)
	}
	return entries, nil
}
