// Package manifest defines a snapshot's manifest: what was backed up (source,
// host, mode, size), how (chunk size, hash, compression) and where each chunk's
// bytes lie: at fixed offsets of a volume (volume mode), or as extents of the
// files of a tree (files mode). Encode and Decode give its versioned JSON
// form; Validate checks that a manifest is whole and consistent, and that no
// path in it can reach outside a restore target, before anything trusts it.
// docs/format.md specifies the schema.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/layout"
)

// Version is the newest manifest schema version this package reads and
// writes. Decode reads every version up to it and rejects newer ones.
// Version 2 added files mode, version 3 file names that are not UTF-8 text
// (EncodeName), version 4 files-mode manifests stored as directory objects
// (VersionTrees); see VersionFor.
const Version = 4

// VersionFor returns the version a snapshot of mode is written with: 2 for
// files mode, 1 for volumes, so that readers that only know version 1 can
// still restore every volume snapshot. A files-mode snapshot that holds an
// encoded name needs version 3 instead: see (*Snapshot).SetVersion.
func VersionFor(mode string) int {
	if mode == ModeFiles {
		return 2
	}
	return 1
}

// SetVersion sets the snapshot's version to the lowest that describes it:
// VersionFor its mode, or 3 when a file name or symlink target in it is not
// UTF-8 text, so that older readers refuse it rather than misread it.
func (s *Snapshot) SetVersion() {
	s.Version = VersionFor(s.Mode)
	for _, e := range s.Files {
		if encoded(e.Path) || encoded(e.Target) {
			s.Version = 3
			return
		}
	}
}

// Modes of backup.
const (
	ModeVolume = "volume" // the bytes of one file or block device
	ModeFiles  = "files"  // a directory tree, file by file
)

// Source kinds.
const (
	KindFile   = "file"   // a regular file holding an image (volume mode)
	KindDevice = "device" // a block device (volume mode)
	KindDir    = "dir"    // a directory (files mode)
)

// Snapshot is one committed backup. A snapshot exists in a repository whole
// or not at all: its manifest is written after every chunk it names.
type Snapshot struct {
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	JobID       string    `json:"job_id,omitempty"`
	Time        time.Time `json:"time"`
	Host        string    `json:"host"`
	Path        string    `json:"path"`
	Mode        string    `json:"mode"`
	SourceKind  string    `json:"source_kind"`
	Size        int64     `json:"size"`
	ChunkSize   int64     `json:"chunk_size"`
	Hash        string    `json:"hash"`
	Compression string    `json:"compression"`
	Level       string    `json:"level"`
	Chunks      []Chunk   `json:"chunks"`
	// Files lists a files-mode snapshot's entries in walk order (a
	// directory before what it holds); Size is then the bytes of their
	// content and Chunks the distinct chunks their extents name.
	Files []Entry `json:"files,omitempty"`
	// Device is the block device a directory was backed up through, when
	// automatic mode choice read its filesystem as a volume.
	Device string `json:"device,omitempty"`
	// FileMode is an image file's permission bits (07777 at most, as in
	// chmod(2)) when it was backed up; a restore to a file gives the file
	// this mode. Absent for devices, directories and older snapshots.
	FileMode *uint32 `json:"file_mode,omitempty"`
	// Tags label the snapshot (bulkctl backup --tag), sorted, each once.
	Tags  []string `json:"tags,omitempty"`
	Stats Stats    `json:"stats"`
	// Root is, in a manifest of version 4 or later, the backed-up
	// directory's entry, naming the directory object of what it holds
	// (trees.go); Files and Chunks are then not stored but assembled.
	Root *TreeEntry `json:"root,omitempty"`
	// Trees lists the directory objects an assembled snapshot was read
	// from (ID in Hash, and StoredSize), sorted by ID: they are kept, like
	// chunks, as long as the snapshot is. Never stored.
	Trees []Chunk `json:"-"`
}

// Chunk locates one chunk of the source. A zero chunk (all bytes zero) has no
// hash and no stored object.
type Chunk struct {
	Offset     int64  `json:"offset"`
	Length     int64  `json:"length"`
	Hash       string `json:"hash,omitempty"`
	StoredSize int64  `json:"stored_size,omitempty"`
	Zero       bool   `json:"zero,omitempty"`
}

// ID returns the chunk's ID. It is only meaningful for non-zero chunks of a
// validated manifest.
func (c Chunk) ID() (chunk.ID, error) { return chunk.ParseID(c.Hash) }

// Stats summarises a backup run.
type Stats struct {
	// SourceBytes is the size of the source read.
	SourceBytes int64 `json:"source_bytes"`
	// StoredBytes is the stored size of all the snapshot's chunks, shared or not.
	StoredBytes int64 `json:"stored_bytes"`
	// NewBytes is the stored size of the chunks this run added.
	NewBytes int64 `json:"new_bytes"`
	// Chunks counts all chunks; ZeroChunks and NewChunks count subsets.
	Chunks     int     `json:"chunks"`
	ZeroChunks int     `json:"zero_chunks"`
	NewChunks  int     `json:"new_chunks"`
	Seconds    float64 `json:"seconds"`
	// Files mode: entries of each kind of change against the parent
	// snapshot (new, changed, unchanged regular files) and files listed
	// with a warning (unreadable, changed while read, skipped specials).
	Files          int `json:"files,omitempty"`
	NewFiles       int `json:"new_files,omitempty"`
	ChangedFiles   int `json:"changed_files,omitempty"`
	UnchangedFiles int `json:"unchanged_files,omitempty"`
	Warnings       int `json:"warnings,omitempty"`
	// ReadBytes is what readers read: less than SourceBytes when
	// unchanged files were skipped.
	ReadBytes int64 `json:"read_bytes,omitempty"`
	// Excluded counts the entries of the tree left out by the backup's
	// selection (excludes, caches, sizes, other filesystems, the
	// repository), an excluded directory once.
	Excluded int `json:"excluded,omitempty"`
}

// ErrInvalid is wrapped by every validation and decoding error.
var ErrInvalid = errors.New("manifest: invalid")

// Encode returns the manifest's JSON form after validating it. A manifest
// larger than MaxSize is refused with an error wrapping ErrTooLarge.
func Encode(s *Snapshot) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	flat := *s
	flat.Root = nil // an assembled snapshot's: its entries are all here
	data, err := json.Marshal(&flat)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: snapshot %s: its manifest holds %d bytes, more than the %d bytes it may (%d chunks, %d files)",
			ErrTooLarge, s.ID, len(data), MaxSize, len(s.Chunks), len(s.Files))
	}
	return data, nil
}

// Decode parses and validates a manifest.
func Decode(data []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// EncodeStored returns the JSON of a snapshot in stored tree form
// (SplitTrees) after checking what can be checked without its directory
// objects.
func EncodeStored(s *Snapshot) ([]byte, error) {
	if err := s.checkStored(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// checkStored checks a manifest in stored tree form: a known version
// that has directory objects, files mode, an ID, a known hash and chunk
// size, and no files or chunks of its own.
func (s *Snapshot) checkStored() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot %s: %s", ErrInvalid, s.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Version < VersionTrees || s.Version > Version:
		return bad("version %d does not store directory objects (this build reads %d to %d)", s.Version, VersionTrees, Version)
	case s.ID == "":
		return bad("empty id")
	case s.Mode != ModeFiles:
		return bad("a %s snapshot has no directory objects", s.Mode)
	case !knownHash(s.Hash):
		return bad("unknown hash %q", s.Hash)
	case s.Root == nil:
		return bad("no root directory")
	case len(s.Files) > 0 || len(s.Chunks) > 0:
		return bad("a manifest with a root directory object lists files or chunks itself")
	}
	return layoutErr(bad, s.ChunkSize)
}

// layoutErr reports an invalid chunk size through bad.
func layoutErr(bad func(string, ...any) error, chunkSize int64) error {
	if err := layout.CheckChunkSize(chunkSize); err != nil {
		return bad("%v", err)
	}
	return nil
}

// EncodeHeader returns the JSON form of what describes a snapshot: its
// manifest without chunks and files, which DecodeHeader reads. It does not
// validate; encode the manifest itself with Encode, which does.
func EncodeHeader(s *Snapshot) ([]byte, error) {
	h := *s
	h.Chunks, h.Files = nil, nil
	return json.Marshal(&h)
}

// DecodeHeader parses what describes a snapshot (ID, time, source, mode,
// sizes, stats) and skips its chunks and files, which is much cheaper for a
// large tree. Nothing else is validated: load the whole manifest with
// Decode before trusting it to restore.
func DecodeHeader(data []byte) (*Snapshot, error) {
	var h struct {
		Snapshot
		Chunks skip `json:"chunks"` // shadows Snapshot.Chunks
		Files  skip `json:"files"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := h.Snapshot.checkHeader(); err != nil {
		return nil, err
	}
	return &h.Snapshot, nil
}

// checkHeader checks what DecodeHeader promises: a known version and an ID.
func (s *Snapshot) checkHeader() error {
	if s.Version < 1 || s.Version > Version || s.ID == "" {
		return fmt.Errorf("%w: snapshot %q of version %d", ErrInvalid, s.ID, s.Version)
	}
	return nil
}

// skip is a JSON value that is read past and dropped.
type skip struct{}

func (*skip) UnmarshalJSON([]byte) error { return nil }

// Validate checks that the manifest is of a known version and describes the
// whole source: chunks in order, contiguous, of the chunk size but for a
// shorter last one, each with a valid hash unless it is a zero chunk.
func (s *Snapshot) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot %s: %s", ErrInvalid, s.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Version < 1 || s.Version > Version:
		return bad("version %d is not supported (this build reads 1 to %d)", s.Version, Version)
	case s.ID == "":
		return bad("empty id")
	case s.Mode == ModeFiles:
		return s.validateFiles(bad)
	case s.Mode != ModeVolume:
		return bad("unknown mode %q", s.Mode)
	case len(s.Files) > 0 || s.Root != nil:
		return bad("a volume snapshot lists files")
	case !knownHash(s.Hash):
		return bad("unknown hash %q", s.Hash)
	case s.Size < 0:
		return bad("negative size %d", s.Size)
	case s.FileMode != nil && *s.FileMode > 0o7777:
		return bad("file mode %o has more than permission bits", *s.FileMode)
	}
	if err := layout.CheckChunkSize(s.ChunkSize); err != nil {
		return bad("%v", err)
	}
	if want := layout.Count(s.Size, s.ChunkSize); len(s.Chunks) != want {
		return bad("%d chunks for %d bytes in chunks of %d, want %d", len(s.Chunks), s.Size, s.ChunkSize, want)
	}
	for i, c := range s.Chunks {
		want := layout.At(i, s.Size, s.ChunkSize)
		if c.Offset != want.Offset || c.Length != want.Length {
			return bad("chunk %d covers [%d,+%d), want [%d,+%d)", i, c.Offset, c.Length, want.Offset, want.Length)
		}
		if c.Zero {
			if c.Hash != "" || c.StoredSize != 0 {
				return bad("zero chunk %d has a hash or stored size", i)
			}
			continue
		}
		if _, err := chunk.ParseID(c.Hash); err != nil {
			return bad("chunk %d: %v", i, err)
		}
		if c.StoredSize <= 0 {
			return bad("chunk %d: stored size %d", i, c.StoredSize)
		}
	}
	return nil
}

// MaxSize bounds a manifest's JSON: Encode refuses to write a larger one
// and readers refuse, before decoding it, an object that claims to hold
// one. It bounds what reading any manifest can cost, however hostile the
// repository: a decoded manifest takes about three times its JSON in
// memory. At about 130 bytes per volume chunk it holds some two million
// chunks (8 TiB in 4 MiB chunks), and at about 250 bytes per file a
// million files.
const MaxSize = 256 << 20

// ErrTooLarge is wrapped when a manifest would be larger than MaxSize.
var ErrTooLarge = errors.New("manifest: too large")

// maxVolumeChunkJSON is the most one volume chunk can take in a manifest:
// {"offset":<19 digits>,"length":<9>,"hash":"<64>","stored_size":<10>},
const maxVolumeChunkJSON = 150

// CheckVolume returns an error wrapping ErrTooLarge when the manifest of a
// volume of size bytes in chunks of chunkSize could exceed MaxSize, naming
// a chunk size that fits, so a backup fails before it reads anything
// rather than at its commit.
func CheckVolume(size, chunkSize int64) error {
	const room = (MaxSize - 64<<10) / maxVolumeChunkJSON // chunks that always fit
	n := layout.Count(size, chunkSize)
	if n <= room {
		return nil
	}
	fits := int64(layout.BlockSize)
	for fits <= layout.MaxChunkSize && layout.Count(size, fits) > room {
		fits *= 2
	}
	if fits > layout.MaxChunkSize {
		return fmt.Errorf("%w: a volume of %d bytes is more than %d chunks of the largest chunk size, more than a manifest holds",
			ErrTooLarge, size, room)
	}
	return fmt.Errorf("%w: a volume of %d bytes in chunks of %d is %d chunks, more than the %d a manifest holds; use a chunk size of at least %d",
		ErrTooLarge, size, chunkSize, n, room, fits)
}

// DecodeReader is Decode for a manifest read as a stream: it decodes the
// chunks and files one at a time, so memory holds the decoded manifest but
// never its whole JSON text. It reads r to its end, so that a reader that
// checks its data as it ends (chunk.OpenStream) reports damage.
func DecodeReader(r io.Reader) (*Snapshot, error) {
	s, err := decodeStream(r, false, false)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeStoredReader is DecodeReader for a manifest as a repository
// stores it: one in stored tree form (Stored) is checked as far as it can
// be without its directory objects (assemble it, then Validate); any other
// is validated whole.
func DecodeStoredReader(r io.Reader) (*Snapshot, error) {
	s, err := decodeStream(r, false, false)
	if err != nil {
		return nil, err
	}
	if s.Root != nil {
		return s, s.checkStored()
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeHeaderReader is DecodeHeader for a manifest read as a stream: it
// skips the chunks and files element by element, holding none of them.
func DecodeHeaderReader(r io.Reader) (*Snapshot, error) {
	s, err := decodeStream(r, true, false)
	if err != nil {
		return nil, err
	}
	if err := s.checkHeader(); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeChunksReader is DecodeReader for those who need only the chunks a
// snapshot names (prune, check): it decodes the chunks and skips the files
// element by element, holding none of them. It checks what the chunks'
// users rely on: a known version, an ID, and a valid hash for every chunk
// that is not a zero chunk; load the whole manifest with DecodeReader before
// trusting it to restore. A manifest in stored tree form (Stored) names
// its chunks in its directory objects: it is returned as
// DecodeStoredReader returns it, to be assembled.
func DecodeChunksReader(r io.Reader) (*Snapshot, error) {
	s, err := decodeStream(r, false, true)
	if err != nil {
		return nil, err
	}
	if s.Root != nil {
		return s, s.checkStored()
	}
	if err := s.checkHeader(); err != nil {
		return nil, err
	}
	if !knownHash(s.Hash) {
		return nil, fmt.Errorf("%w: snapshot %s: unknown hash %q", ErrInvalid, s.ID, s.Hash)
	}
	for i, c := range s.Chunks {
		if c.Zero {
			continue
		}
		if _, err := chunk.ParseID(c.Hash); err != nil {
			return nil, fmt.Errorf("%w: snapshot %s: chunk %d: %v", ErrInvalid, s.ID, i, err)
		}
	}
	return s, nil
}

// decodeStream walks the manifest's top-level object: its scalar members
// are gathered and decoded together, the chunks and files arrays element by
// element (or skipped: both with headerOnly, the files with skipFiles).
func decodeStream(r io.Reader, headerOnly, skipFiles bool) (*Snapshot, error) {
	noFiles := headerOnly || skipFiles
	invalid := func(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }
	dec := json.NewDecoder(r)
	if tok, err := dec.Token(); err != nil {
		return nil, invalid(err)
	} else if tok != json.Delim('{') {
		return nil, invalid(fmt.Errorf("manifest is not a JSON object"))
	}
	var (
		s      Snapshot
		scalar = []byte{'{'}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalid(err)
		}
		key, _ := tok.(string)
		switch { // json.Unmarshal matches member names without regard to case
		case strings.EqualFold(key, "chunks"):
			s.Chunks, err = decodeArray[Chunk](dec, headerOnly)
		case strings.EqualFold(key, "files"):
			s.Files, err = decodeArray[Entry](dec, noFiles)
		default:
			var raw json.RawMessage
			if err = dec.Decode(&raw); err == nil {
				if len(scalar) > 1 {
					scalar = append(scalar, ',')
				}
				name, _ := json.Marshal(key)
				scalar = append(append(append(scalar, name...), ':'), raw...)
			}
		}
		if err != nil {
			return nil, invalid(fmt.Errorf("%s: %w", key, err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, invalid(err)
	}
	chunks, files := s.Chunks, s.Files
	if err := json.Unmarshal(append(scalar, '}'), &s); err != nil {
		return nil, invalid(err)
	}
	s.Chunks, s.Files = chunks, files
	// The object must be all there is: the reader checks the data's hash
	// as it ends, and trailing bytes are not a manifest.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("data after the manifest")
		}
		return nil, invalid(err)
	}
	return &s, nil
}

// decodeArray decodes a JSON array (or null) one element at a time; skip
// reads the elements without keeping them.
func decodeArray[T any](dec *json.Decoder, skipAll bool) ([]T, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("not an array")
	}
	out := []T{}
	for dec.More() {
		if skipAll {
			var s skip
			if err := dec.Decode(&s); err != nil {
				return nil, err
			}
			continue
		}
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	_, err = dec.Token() // ']'
	if skipAll {
		return nil, err
	}
	return out, err
}

// knownHash reports whether name is a chunk ID algorithm this build knows:
// "sha256" (plaintext repositories) or "hmac-sha256" (encrypted ones; the
// repository checks that a manifest's is its own).
func knownHash(name string) bool { return name == "sha256" || name == "hmac-sha256" }
