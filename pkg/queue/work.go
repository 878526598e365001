package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"

	"github.com/bulkbackup/bulkbackup/pkg/internal/zpack"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// WorkVersion is the version of the messages the fleet's services exchange
// among themselves: work items, completions and the chunks' data plane.
// It is separate from MessageVersion (the requests, records and events
// clients use): version 2 made every operation a message type of its own.
// Services of different work versions do not work together: upgrade them
// together. Version 3 added the maintenance tasks, and readers and
// compressors that honour prunes and the damage registry: a version-2
// service would deduplicate against a chunk a prune is deleting. Version 4
// packs the entries of scan batches (ScanBatch.Packed).
const WorkVersion = 4

// Work operations, the third token of a work subject
// (bulk.work.<op>.<host>.<job>). Each has its own message type.
const (
	OpRead = "read" // ReadChunk: read one chunk of a source (backup)
	OpScan = "scan" // ScanTree: list a tree (files-mode backup)

	// Steps of a volume restore, in order, per target.
	OpPrepare = "prepare" // PrepareVolume: create or check the target, set its size
	OpChunk   = "chunk"   // WriteChunk: fetch, check and write one chunk
	OpFinish  = "finish"  // FinishVolume: flush the target, move it into place

	// Steps of a tree restore, in order, per target.
	OpEntries  = "entries"  // TreeEntries: create directories and partial files
	OpExtents  = "extents"  // WriteExtents: fetch, check one chunk, write its pieces
	OpMetadata = "metadata" // TreeEntries: owner, mode, times; files into place; symlinks
	OpLinks    = "links"    // TreeEntries: hard links
	OpDirs     = "dirs"     // TreeEntries: directories' owner, mode and times; flush

	// OpAbort removes what a failed restore left on a target: AbortRestore.
	OpAbort = "abort"
)

// ParentChunk is a chunk in the source's previous snapshot: a reader whose
// chunk hashes to Hash, and finds it stored whole, reports it done at once,
// so unchanged data never travels or is compressed again.
type ParentChunk struct {
	Hash       string `json:"hash"`
	StoredSize int64  `json:"stored_size"`
}

// ReadChunk asks the reader of a host to read one chunk of a source: Length
// bytes at Offset of the volume Path, or, in files mode, the file Pieces
// under the tree Path laid end to end.
type ReadChunk struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Index   int    `json:"index"`
	Attempt int    `json:"attempt"`
	// Repo is where the chunk goes: the reader checks a parent's chunk is
	// stored whole there, and may store the chunk itself.
	Repo   string       `json:"repo"`
	Path   string       `json:"path"`
	Offset int64        `json:"offset,omitempty"`
	Length int64        `json:"length"`
	Pieces []plan.Piece `json:"pieces,omitempty"`
	Parent *ParentChunk `json:"parent,omitempty"`
	// Sealed says Repo is encrypted: the reader hands the chunk over only
	// sealed (FetchAAD), with its write key for Repo, and a compressor
	// accepts it only so.
	Sealed bool `json:"sealed,omitempty"`
}

func (r *ReadChunk) version() int { return r.V }
func (*ReadChunk) work()          {}

// ScanTree asks the reader of a host to list a tree. It answers with
// ScanBatch completions carrying the entries, then one ScanDone naming
// how many batches that attempt sent.
type ScanTree struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Path    string `json:"path"`
	Attempt int    `json:"attempt"`
	// Selection says what to leave out of the listing; Repo, a directory
	// repository, is left out too when it lies inside the tree.
	Selection
	Repo string `json:"repo,omitempty"`
}

func (r *ScanTree) version() int { return r.V }
func (*ScanTree) work()          {}

// Step is what every restore step names: the job, the target (its index
// among the job's targets, and its path on the host), and the step's index
// among the items of its kind.
type Step struct {
	V      int    `json:"v"`
	JobID  string `json:"job_id"`
	Target int    `json:"target"`
	Index  int    `json:"index"`
	Path   string `json:"path"`
}

func (s *Step) version() int { return s.V }
func (*Step) work()          {}

// PrepareVolume asks to create a volume target (or check a device) of Size
// bytes. Keep names the restore jobs still running, whose partial files
// must be left alone.
type PrepareVolume struct {
	Step
	Size      int64    `json:"size"`
	Overwrite bool     `json:"overwrite,omitempty"`
	Keep      []string `json:"keep,omitempty"`
	FileMode  *uint32  `json:"file_mode,omitempty"`
}

// WriteChunk asks to fetch chunk Hash from Repo, check it and write it at
// Offset of the volume target; a Zero chunk is written as zeros (on a
// device) without fetching anything.
type WriteChunk struct {
	Step
	Repo   string `json:"repo"`
	Size   int64  `json:"size"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Hash   string `json:"hash,omitempty"`
	Zero   bool   `json:"zero,omitempty"`
}

// FinishVolume asks to flush a volume target and move it into place.
type FinishVolume struct {
	Step
	Size      int64   `json:"size"`
	Overwrite bool    `json:"overwrite,omitempty"`
	FileMode  *uint32 `json:"file_mode,omitempty"`
}

// AbortRestore asks to remove what a failed restore left on a target: a
// volume's partial file, or a tree's (Tree).
type AbortRestore struct {
	Step
	Tree bool `json:"tree,omitempty"`
}

// TreeEntries carries the entries (without content) one step of a tree
// restore handles: OpEntries, OpMetadata, OpLinks or OpDirs, as its subject
// says.
type TreeEntries struct {
	Step
	Overwrite bool             `json:"overwrite,omitempty"`
	Keep      []string         `json:"keep,omitempty"`
	Entries   []manifest.Entry `json:"entries"`
}

// WriteExtents asks to fetch chunk Hash (Length bytes) from Repo, check it,
// and write its Parts into the tree's files.
type WriteExtents struct {
	Step
	Repo      string        `json:"repo"`
	Overwrite bool          `json:"overwrite,omitempty"`
	Hash      string        `json:"hash"`
	Length    int64         `json:"length"`
	Parts     []plan.Extent `json:"parts"`
}

// Completion kinds, the last token of a completion subject
// (bulk.done.<job>.<kind>). Each has its own message type.
const (
	DoneChunk    = "chunk"    // ChunkDone
	DoneScanPart = "scanpart" // ScanBatch
	DoneScan     = "scan"     // ScanDone
	DoneProblems = "problems" // FileProblems
	DoneStep     = "step"     // StepDone
	DoneFailed   = "failed"   // WorkFailed
)

// ChunkDone records a chunk of a backup done: stored, found stored, or all
// zeros (never stored).
type ChunkDone struct {
	V          int    `json:"v"`
	JobID      string `json:"job_id"`
	Index      int    `json:"index"`
	Length     int64  `json:"length"`
	Hash       string `json:"hash,omitempty"`
	StoredSize int64  `json:"stored_size,omitempty"`
	Zero       bool   `json:"zero,omitempty"`
	// New: this job stored the chunk; it was not stored before.
	New bool `json:"new,omitempty"`
	// Worker names who did it, for logs and tests.
	Worker string `json:"worker,omitempty"`
}

func (d *ChunkDone) version() int { return d.V }
func (*ChunkDone) work()          {}

// ScanBatch is one batch of a tree's listing, from scan attempt Attempt:
// Count entries, packed (NewScanBatch; Unpack gives them back). Packed,
// they are about a tenth of their JSON: every batch of a scan stays in
// StreamDone until its job ends, and the coordinator keeps them packed
// until the scan is done, so a tree of millions of files is not held twice
// while it is listed.
type ScanBatch struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
	Batch   int    `json:"batch"`
	Count   int    `json:"count"`
	Packed  []byte `json:"packed"`
}

// NewScanBatch returns batch number batch of scan attempt attempt of job
// jobID, holding entries.
func NewScanBatch(jobID string, attempt, batch int, entries []manifest.Entry) *ScanBatch {
	return &ScanBatch{V: WorkVersion, JobID: jobID, Attempt: attempt, Batch: batch, Count: len(entries),
		Packed: zpack.Pack(Encode(entries))}
}

// Unpack returns the batch's entries. It fails on bytes that are not a
// packed batch of Count entries, or unpack to more than MaxScanBatch.
func (d *ScanBatch) Unpack() ([]manifest.Entry, error) {
	raw, err := zpack.Unpack(d.Packed, MaxScanBatch)
	if err != nil {
		return nil, fmt.Errorf("%w: scan batch %d: %w", ErrBadMessage, d.Batch, err)
	}
	if len(raw) > MaxScanBatch {
		return nil, fmt.Errorf("%w: scan batch %d of %d bytes exceeds %d", ErrBadMessage, d.Batch, len(raw), MaxScanBatch)
	}
	var entries []manifest.Entry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("%w: scan batch %d: %w", ErrBadMessage, d.Batch, err)
	}
	if len(entries) != d.Count {
		return nil, fmt.Errorf("%w: scan batch %d holds %d entries, says %d", ErrBadMessage, d.Batch, len(entries), d.Count)
	}
	return entries, nil
}

// maxScanBatchEntries bounds a scan batch's Count: an entry's JSON takes
// more than 16 bytes.
const maxScanBatchEntries = MaxScanBatch / 16

// MaxScanBatch bounds the JSON of one scan batch's entries, unpacked: a
// batch is cut at about 256 KiB, and a path is at most 4 KiB.
const MaxScanBatch = 4 << 20

func (d *ScanBatch) version() int { return d.V }
func (*ScanBatch) work()          {}

// ScanDone ends scan attempt Attempt: it sent Batches batches. Warnings say
// what could not be recorded at all.
type ScanDone struct {
	V        int      `json:"v"`
	JobID    string   `json:"job_id"`
	Attempt  int      `json:"attempt"`
	Batches  int      `json:"batches"`
	Warnings []string `json:"warnings,omitempty"`
	// Excluded counts the entries the scan's Selection left out (an
	// excluded directory once).
	Excluded int `json:"excluded,omitempty"`
}

func (d *ScanDone) version() int { return d.V }
func (*ScanDone) work()          {}

// FileProblems names the files of chunk Index that could not be read, or
// changed while read; sent before the chunk's completion.
type FileProblems struct {
	V        int                  `json:"v"`
	JobID    string               `json:"job_id"`
	Index    int                  `json:"index"`
	Problems []source.FileProblem `json:"problems"`
}

func (d *FileProblems) version() int { return d.V }
func (*FileProblems) work()          {}

// StepDone records a restore step done.
type StepDone struct {
	V      int    `json:"v"`
	JobID  string `json:"job_id"`
	Op     string `json:"op"`
	Target int    `json:"target"`
	Index  int    `json:"index"`
	// Length is the bytes the step wrote, for progress.
	Length int64 `json:"length,omitempty"`
	// Device reports, on prepare, that the target is a block device, so
	// zero chunks must be written rather than left as holes.
	Device bool   `json:"device,omitempty"`
	Worker string `json:"worker,omitempty"`
}

func (d *StepDone) version() int { return d.V }
func (*StepDone) work()          {}

// WorkFailed reports work that cannot succeed by retrying: it fails the
// job. Code classifies the cause for programs, Message says it for people,
// naming what failed (the chunk, the file, the target) without the
// internals of where.
type WorkFailed struct {
	V       int    `json:"v"`
	JobID   string `json:"job_id"`
	Op      string `json:"op"`
	Target  int    `json:"target,omitempty"`
	Index   int    `json:"index"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Worker  string `json:"worker,omitempty"`
}

func (d *WorkFailed) version() int { return d.V }
func (*WorkFailed) work()          {}

// Code classifies why work failed.
type Code string

// Failure codes.
const (
	CodeCorrupt     Code = "corrupt"     // stored data does not check against its hash
	CodeMissing     Code = "missing"     // stored data is not there
	CodeSource      Code = "source"      // the source could not be read
	CodeTarget      Code = "target"      // a restore target is in the way or unfit
	CodeUnsafe      Code = "unsafe"      // a path leads outside a target or through a link
	CodeNoSpace     Code = "no-space"    // a disk or the repository is full
	CodeDenied      Code = "denied"      // permission or credentials refused
	CodeUnavailable Code = "unavailable" // the repository stayed unreachable
	CodeInvalid     Code = "invalid"     // a malformed work item
	CodeFailed      Code = "failed"      // anything else
)

// Failure is the error of work that failed for good, as a WorkFailed
// carries it.
type Failure struct {
	Code    Code
	Message string
}

func (f *Failure) Error() string { return f.Message }

// Failed returns a Failure with code and message.
func Failed(code Code, format string, args ...any) *Failure {
	return &Failure{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ChunkDoneMsgID and the others are the deduplication IDs of completions.
func ChunkDoneMsgID(d *ChunkDone) string { return fmt.Sprintf("%s.chunk.%d", d.JobID, d.Index) }

// ScanBatchMsgID deduplicates a scan batch.
func ScanBatchMsgID(d *ScanBatch) string {
	return fmt.Sprintf("%s.scanpart.%d.%d", d.JobID, d.Attempt, d.Batch)
}

// ScanDoneMsgID deduplicates a scan's end.
func ScanDoneMsgID(d *ScanDone) string { return fmt.Sprintf("%s.scan.%d", d.JobID, d.Attempt) }

// FileProblemsMsgID deduplicates a chunk's file problems.
func FileProblemsMsgID(d *FileProblems) string {
	return fmt.Sprintf("%s.problems.%d", d.JobID, d.Index)
}

// StepDoneMsgID deduplicates a restore step's completion.
func StepDoneMsgID(d *StepDone) string {
	return fmt.Sprintf("%s.step.%s.%d.%d", d.JobID, d.Op, d.Target, d.Index)
}

// WorkFailedMsgID deduplicates a failure.
func WorkFailedMsgID(d *WorkFailed) string {
	return fmt.Sprintf("%s.failed.%s.%d.%d", d.JobID, d.Op, d.Target, d.Index)
}

// ChunkReady announces a raw chunk that the readers of Host hold for the
// compressors (stream StreamReady). Only this descriptor travels through
// JetStream; the bytes are fetched from the reader: directly from its data
// server (Direct, with Token) when it has one and it can be reached, or by
// a FetchRequest on FetchSubject(Host) otherwise. Read says how to read the
// chunk again, which any reader of the host does when it no longer holds it
// (it restarted, or dropped it waiting).
type ChunkReady struct {
	V      int       `json:"v"`
	JobID  string    `json:"job_id"`
	Index  int       `json:"index"`
	Length int64     `json:"length"`
	Host   string    `json:"host"`
	Read   ReadChunk `json:"read"`
	Direct string    `json:"direct,omitempty"`
	Token  string    `json:"token,omitempty"`
	// CRC32C is the Castagnoli CRC of the raw bytes as the reader read
	// them (ChunkCRC): a compressor refuses fetched bytes that differ, and
	// fetches again, rather than store other bytes as this chunk. 0: none
	// given.
	CRC32C uint32 `json:"crc32c,omitempty"`
}

// castagnoli is the CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ChunkCRC returns the CRC32C of a chunk's raw bytes, as ChunkReady
// carries it.
func ChunkCRC(raw []byte) uint32 { return crc32.Checksum(raw, castagnoli) }

func (c *ChunkReady) version() int { return c.V }
func (*ChunkReady) work()          {}

// ChunkReadyMsgID deduplicates a chunk's descriptor: one per read attempt,
// so a re-issued chunk is announced again.
func ChunkReadyMsgID(c *ChunkReady) string {
	return fmt.Sprintf("%s.ready.%d.a%d", c.JobID, c.Index, c.Read.Attempt)
}

// FetchRequest asks the readers of a host for Length bytes at Offset of a
// ready chunk (a chunk larger than a message comes in several). The reply's
// body is the bytes, for an encrypted repository sealed (FetchAAD); a failure comes back as the headers HeaderError and
// HeaderCode with an empty body. Token is needed by a reader's data server,
// not on NATS, whose own authentication admits the fleet.
type FetchRequest struct {
	V      int       `json:"v"`
	JobID  string    `json:"job_id"`
	Index  int       `json:"index"`
	Offset int64     `json:"offset"`
	Length int64     `json:"length"`
	Read   ReadChunk `json:"read"`
	Token  string    `json:"token,omitempty"`
}

// FetchAAD is what the bytes a fetch answers are authenticated with when
// they are sealed (the chunks of an encrypted repository, sealed with the
// job's staging key: repository.HandOverKey): the job, the chunk and the
// range asked for, so that a reply cannot be replayed for another.
func FetchAAD(req *FetchRequest) []byte {
	return fmt.Appendf(nil, "bulkbackup fetch v1\x00%s\x00%d\x00%d\x00%d", req.JobID, req.Index, req.Offset, req.Length)
}

func (r *FetchRequest) version() int { return r.V }
func (*FetchRequest) work()          {}

// Headers of a failed fetch's reply.
const (
	HeaderError = "Bulk-Error"
	HeaderCode  = "Bulk-Code"
)
