package plan

// MaxPackParts bounds how many file pieces one pack holds, so that a pack's
// work item (one line per piece) stays well inside a NATS message even when
// a chunk is filled with thousands of tiny files.
const MaxPackParts = 1024

// Part is Length bytes of file number File, starting at Offset in the file,
// placed at PackOffset in its pack.
type Part struct {
	File       int
	Offset     int64
	Length     int64
	PackOffset int64
}

// Pack is the content of one chunk of a files-mode backup: pieces of files
// laid end to end.
type Pack struct {
	Parts  []Part
	Length int64
}

// Packs lays out files of the given sizes into packs of at most chunkSize
// bytes and maxParts pieces (0 means MaxPackParts). A file's whole
// chunk-sized pieces, at file offsets that are multiples of chunkSize, get a
// pack each, so an unchanged large file yields the same chunks wherever it
// lies in the tree; what is left of each file (a small file whole, a large
// file's tail) is packed with its neighbours in order. Empty files take no
// room. The result is deterministic.
func Packs(sizes []int64, chunkSize int64, maxParts int) []Pack {
	if maxParts <= 0 {
		maxParts = MaxPackParts
	}
	var packs []Pack
	var open Pack
	flush := func() {
		if len(open.Parts) > 0 {
			packs = append(packs, open)
			open = Pack{}
		}
	}
	for file, size := range sizes {
		var off int64
		for ; size-off >= chunkSize; off += chunkSize {
			packs = append(packs, Pack{Parts: []Part{{File: file, Offset: off, Length: chunkSize}}, Length: chunkSize})
		}
		rest := size - off
		if rest == 0 {
			continue
		}
		if open.Length+rest > chunkSize || len(open.Parts) == maxParts {
			flush()
		}
		open.Parts = append(open.Parts, Part{File: file, Offset: off, Length: rest, PackOffset: open.Length})
		open.Length += rest
	}
	flush()
	return packs
}
