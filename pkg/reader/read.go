package reader

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// handleRead reads one chunk and sees it done: an all-zero chunk and an
// unchanged one (stored whole in the parent snapshot) at once, any other
// stored by send. A source that cannot be read fails the job rather than
// being retried forever; files that cannot be read in a files-mode chunk are
// reported, and the chunk stored without them.
func (r *Reader) handleRead(ctx context.Context, msg jetstream.Msg, item *queue.ReadChunk) error {
	m := r.cfg.Metrics
	defer m.Begin("read")()
	buf := r.buffer(item.Length)
	held := false
	defer func() {
		if !held {
			r.release(buf)
		}
	}()
	r.bytes.Add(item.Length)
	start := time.Now()
	problems, err := readChunk(item, buf)
	m.Stage("read", start)
	if err != nil {
		m.Error("read")
		return r.fail(ctx, &queue.WorkFailed{JobID: item.JobID, Op: queue.OpRead, Index: item.Index,
			Code: queue.CodeSource, Message: err.Error()})
	}
	if len(problems) > 0 {
		for _, p := range problems {
			r.logger.WarnContext(ctx, "file problem", "job_id", item.JobID, "path", p.Path, "err", p.Err)
		}
		// Before the chunk's completion, so the coordinator has them when
		// it commits.
		d := &queue.FileProblems{V: queue.WorkVersion, JobID: item.JobID, Index: item.Index, Problems: problems}
		if err := r.publish(ctx, queue.DoneProblems, item.JobID, d, queue.FileProblemsMsgID(d)); err != nil {
			return err
		}
	}
	done := &queue.ChunkDone{JobID: item.JobID, Index: item.Index, Length: item.Length}
	if chunk.IsZero(buf) {
		m.Chunk("zero", item.Length)
		done.Zero = true
		return r.chunkDone(ctx, done)
	}
	if item.Parent != nil {
		stored, err := r.unchanged(ctx, item, buf)
		if err != nil {
			return err
		}
		if stored > 0 {
			m.Chunk("unchanged", item.Length)
			done.Hash, done.StoredSize = item.Parent.Hash, stored
			return r.chunkDone(ctx, done)
		}
	}
	held, err = r.send(ctx, msg, item, buf)
	return err
}

// readChunk reads the chunk item names into buf: a range of a volume, or a
// files-mode pack's pieces. Only a failure to read the volume, or to open
// the tree at all, is an error; files that cannot be read are problems.
func readChunk(item *queue.ReadChunk, buf []byte) ([]source.FileProblem, error) {
	if len(item.Pieces) == 0 {
		vol, err := source.OpenVolume(item.Path)
		if err != nil {
			return nil, err
		}
		defer vol.Close()
		_, err = vol.ReadAt(buf, item.Offset)
		return nil, err
	}
	var sum int64
	for _, p := range item.Pieces {
		sum += p.Length
	}
	if sum != item.Length {
		return nil, fmt.Errorf("chunk %d: its pieces hold %d bytes, the work item says %d", item.Index, sum, item.Length)
	}
	return source.ReadPieces(item.Path, item.Pieces, buf)
}

// unchanged reports, for a chunk whose previous snapshot named a hash, the
// size of the stored object it may be named by again: 0 when its bytes
// changed, or when the repository does not hold that object whole (deleted,
// truncated, or recorded as damaged): then it is sent to be stored again,
// rather than committed unseen into the new snapshot.
func (r *Reader) unchanged(ctx context.Context, item *queue.ReadChunk, buf []byte) (int64, error) {
	// A repository this reader cannot look into is no reason to retry:
	// the chunk is stored again, where the compressor's own look at the
	// repository finds it stored whole, if it is.
	repo, err := r.cfg.Repos.Get(ctx, item.Repo, false)
	if err != nil {
		r.logger.DebugContext(ctx, "cannot check an unchanged chunk; sending it to be stored", "job_id", item.JobID, "index", item.Index, "err", err)
		return 0, nil
	}
	// The chunk's ID is the repository's: the SHA-256 of its bytes, or in
	// an encrypted repository their MAC under its write key.
	id, err := repo.ChunkID(buf)
	if err != nil {
		r.logger.DebugContext(ctx, "cannot check an unchanged chunk; sending it to be stored", "job_id", item.JobID, "index", item.Index, "err", err)
		return 0, nil
	}
	if id.String() != item.Parent.Hash {
		return 0, nil
	}
	// CheckReuse also keeps the chunk from any prune that condemned it
	// (docs/format.md section 10) and refuses one recorded as damaged.
	stat, err := repo.CheckReuse(ctx, id)
	if err != nil {
		r.logger.DebugContext(ctx, "cannot check an unchanged chunk; sending it to be stored", "job_id", item.JobID, "index", item.Index, "err", err)
		return 0, nil
	}
	if !stat.Reusable(item.Parent.StoredSize) {
		r.logger.WarnContext(ctx, "unchanged chunk is not stored whole; sending it to be stored again", "job_id", item.JobID,
			"chunk_id", item.Parent.Hash, "state", stat.State.String(), "size", stat.Size, "recorded", item.Parent.StoredSize, "problem", stat.Problem)
		return 0, nil
	}
	return stat.Size, nil
}
