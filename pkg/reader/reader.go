// Package reader is the reader service: it runs on a host that holds data,
// under that host's name, and does the work that must happen where the data
// is.
//
// For a backup it answers stat requests about a source, then takes read work
// items from its host's durable consumer, reads each chunk with ReadAt, and
// passes it on: an all-zero chunk is reported done at once (it is never
// stored), so is a chunk that hashes to the same chunk in the source's
// previous snapshot (incremental backups read and hash, but send nothing),
// any other travels to the compressors as one message on the raw queue, or,
// when it is larger than a message may be, is staged as an object in the
// repository and the message names it. When the raw queue is full (the
// fleet's in-flight bound) the reader waits for room: that is the flow
// control that keeps memory bounded whatever the volume's size. A read item
// is acknowledged only after its chunk is accepted by the raw queue. In a
// single-process fleet the chunk is instead handed to a compressor in memory
// (Config.Handoff), and the read item acknowledged once it is stored.
//
// For a restore it takes write work items: prepare the target, write
// verified chunks at their offsets (directly, around the page cache, where
// the file system allows), finish (flush and move into place).
package reader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/internal/bufpool"
	"github.com/bulkbackup/bulkbackup/pkg/internal/directio"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/metrics"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/restore"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// DefaultWorkers is a reader's default concurrency. A restore's direct
// writes wait on the disk, and a backup's reads on a compressor, so it is
// well above the CPU count: on the benchmark machine (2 CPUs, virtio disk) a
// 2 GiB restore ran at about 1,150 MB/s with 4 workers, 1,280 with 8 and
// 1,400 with 12, and the backup did not change.
const DefaultWorkers = 12

// Config configures a Reader.
type Config struct {
	// Host is the name this reader serves; work for HOST:PATH comes here.
	Host string
	// Workers is how many chunks are read or written at once; 0 means
	// DefaultWorkers.
	Workers int
	// Repos opens repositories (restore, staging). Required.
	Repos *repository.Cache
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// DrainTimeout bounds how long in-flight work may finish after shutdown
	// begins; 0 means 30s.
	DrainTimeout time.Duration
	// Metrics, if set, records chunks, bytes and stage durations.
	Metrics *metrics.Metrics
	// Handoff, if set, stores a raw chunk in this process (a compressor's
	// Handoff) instead of sending it through the raw queue, and returns
	// once the chunk is stored and its completion published.
	Handoff Handoff
}

// Handoff stores one raw chunk of a job; data is not kept after it returns.
type Handoff func(ctx context.Context, jobID string, index int, data []byte) error

func (c *Config) validate() error {
	if err := queue.CheckToken("host", c.Host); err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	if c.Repos == nil {
		return errors.New("reader: Config.Repos is required")
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Workers < 0 {
		return fmt.Errorf("reader: Workers %d must be positive", c.Workers)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Reader is the reader service of one host.
type Reader struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    Config
	logger *slog.Logger
	bufs   *bufpool.Pool // chunk buffers, aligned so restores write them directly
	gate   *rawGate
	// volumes holds the volume targets of restores open, each written
	// through descriptors opened once.
	volumes *openVolumes

	// chunks and bytes count the chunks read or written; inFlight what is
	// being handled now. They feed the reader's heartbeat.
	chunks, bytes, inFlight atomic.Int64
	started                 time.Time
	id                      string
}

// New returns a Reader using nc.
func New(nc *nats.Conn, cfg Config) (*Reader, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("reader: %w", err)
	}
	machine, _ := os.Hostname()
	return &Reader{
		nc: nc, js: js, cfg: cfg, logger: cfg.Logger.With("component", "reader", "host", cfg.Host), gate: newRawGate(),
		volumes: newOpenVolumes(),
		bufs:    bufpool.New(cfg.Workers, directio.Alloc),
		id:      fmt.Sprintf("%s-%s-%d", cfg.Host, machine, os.Getpid()),
	}, nil
}

// Run serves until ctx is cancelled, then drains in-flight work.
func (r *Reader) Run(ctx context.Context) error {
	sub, err := r.nc.QueueSubscribe(queue.StatSubject(r.cfg.Host), queue.ReaderQueueGroup, r.handleStat)
	if err != nil {
		return fmt.Errorf("reader: subscribe: %w", err)
	}
	defer sub.Unsubscribe()

	r.logger.InfoContext(ctx, "reader serving", "workers", r.cfg.Workers)
	r.started = time.Now().UTC()
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	defer stopHeartbeat()
	go queue.Heartbeat(hbCtx, r.js, r.status)
	err = queue.Serve(ctx, r.js, queue.StreamWork, jetstream.ConsumerConfig{
		Durable:       queue.ConsumerReader(r.cfg.Host),
		FilterSubject: queue.WorkFilter(r.cfg.Host),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 1024,
		MaxDeliver:    -1,
	}, queue.HandlerFunc(r.handle), queue.ConsumeConfig{
		Workers: r.cfg.Workers, DrainTimeout: r.cfg.DrainTimeout, Logger: r.logger, OnRetry: r.cfg.Metrics.Retry,
	})
	r.volumes.closeAll()
	r.logger.InfoContext(context.WithoutCancel(ctx), "reader stopped", "chunks", r.chunks.Load())
	return err
}

func (r *Reader) handleStat(m *nats.Msg) {
	var req queue.StatRequest
	reply := queue.StatReply{V: queue.MessageVersion}
	if err := queue.Decode(m.Data, &req); err != nil {
		reply.Error = err.Error()
	} else if req.Path != "" {
		r.stat(&req, &reply)
	}
	_ = m.Respond(queue.Encode(&reply))
}

// stat describes a source: a volume's size and kind, or a directory and,
// when asked, the facts automatic mode choice needs.
func (r *Reader) stat(req *queue.StatRequest, reply *queue.StatReply) {
	if fi, err := os.Stat(req.Path); err == nil && fi.IsDir() {
		reply.Kind = manifest.KindDir
		if req.CountLimit <= 0 {
			return
		}
		if reply.MountRoot, reply.Device, err = source.MountDevice(req.Path); err != nil {
			r.logger.Warn("mount table not readable; treating the directory as not a mount root", "err", err)
		}
		if reply.Device == "" {
			return // files mode whatever the count (plan.ChooseMode): do not walk the tree twice
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if reply.Files, err = source.CountFiles(ctx, req.Path, req.CountLimit); err != nil {
			reply.Error = fmt.Sprintf("count files in %s: %v", req.Path, err)
		}
		return
	}
	vol, err := source.OpenVolume(req.Path)
	if err != nil {
		reply.Error = err.Error()
		return
	}
	reply.Size, reply.Kind, reply.MTime, reply.FileMode = vol.Size(), vol.Kind(), vol.MTime(), vol.FileMode()
	vol.Close()
}

// status is this reader's heartbeat.
func (r *Reader) status() queue.WorkerStatus {
	return queue.WorkerStatus{
		ID: r.id, Role: queue.RoleReader, Host: r.cfg.Host, Started: r.started, Workers: r.cfg.Workers,
		InFlight: r.inFlight.Load(), Chunks: r.chunks.Load(), Bytes: r.bytes.Load(),
	}
}

func (r *Reader) handle(ctx context.Context, msg jetstream.Msg) (err error) {
	r.inFlight.Add(1)
	defer func() {
		r.inFlight.Add(-1)
		if err == nil {
			r.chunks.Add(1)
		}
	}()
	switch op := strings.Split(msg.Subject(), ".")[2]; op {
	case queue.OpRead:
		var item queue.ReadItem
		if err := queue.Decode(msg.Data(), &item); err != nil {
			return queue.Permanent(err)
		}
		return r.read(ctx, msg, &item)
	case queue.OpScan:
		var item queue.ScanItem
		if err := queue.Decode(msg.Data(), &item); err != nil {
			return queue.Permanent(err)
		}
		return r.scan(ctx, msg, &item)
	case queue.OpWrite:
		var item queue.WriteItem
		if err := queue.Decode(msg.Data(), &item); err != nil {
			return queue.Permanent(err)
		}
		return r.write(ctx, &item)
	default:
		return queue.Permanent(fmt.Errorf("unknown work subject %s", msg.Subject()))
	}
}

func (r *Reader) buffer(n int64) []byte { return r.bufs.Get(int(n)) }

func (r *Reader) release(b []byte) { r.bufs.Put(b) }

// read reads one chunk and hands it on. Errors reading the source fail the
// job (a Done with Error) rather than retrying forever.
func (r *Reader) read(ctx context.Context, msg jetstream.Msg, item *queue.ReadItem) error {
	m := r.cfg.Metrics
	defer m.Begin("read")()
	buf := r.buffer(item.Length)
	defer r.release(buf)
	r.bytes.Add(item.Length)
	start := time.Now()
	var err error
	if len(item.Pieces) > 0 {
		err = r.readPieces(ctx, item, buf)
	} else {
		err = readChunk(item.Path, buf, item.Offset)
	}
	m.Stage("read", start)
	if err != nil {
		m.Error("read")
		return r.fail(ctx, &queue.Done{JobID: item.JobID, Op: queue.OpRead, Index: item.Index, Length: item.Length, Error: err.Error()})
	}
	if chunk.IsZero(buf) {
		m.Chunk("zero", item.Length)
		return r.publishDone(ctx, &queue.Done{JobID: item.JobID, Op: queue.OpRead, Index: item.Index, Length: item.Length, Zero: true})
	}
	if item.ParentHash != "" {
		stored, err := r.unchanged(ctx, item, buf)
		if err != nil {
			return err
		}
		if stored > 0 {
			m.Chunk("unchanged", item.Length)
			return r.publishDone(ctx, &queue.Done{
				JobID: item.JobID, Op: queue.OpRead, Index: item.Index, Length: item.Length,
				Hash: item.ParentHash, StoredSize: stored,
			})
		}
	}
	if r.cfg.Handoff != nil {
		m.Chunk("sent", item.Length) // to the compressor, in memory
		return r.cfg.Handoff(ctx, item.JobID, item.Index, buf)
	}
	out := nats.NewMsg(queue.RawSubject(item.JobID))
	out.Header.Set(queue.HeaderJob, item.JobID)
	out.Header.Set(queue.HeaderIndex, strconv.Itoa(item.Index))
	out.Header.Set(queue.HeaderOffset, strconv.FormatInt(item.Offset, 10))
	out.Header.Set(queue.HeaderLength, strconv.FormatInt(item.Length, 10))
	if item.Length > r.nc.MaxPayload()-4096 {
		repo, err := r.cfg.Repos.Get(ctx, item.Repo, false)
		if err != nil {
			return fmt.Errorf("stage chunk %d: %w", item.Index, err)
		}
		key := repository.StagingKey(item.JobID, item.Index)
		if err := repo.Store().Put(ctx, key, buf); err != nil {
			return fmt.Errorf("stage chunk %d: %w", item.Index, err)
		}
		out.Header.Set(queue.HeaderStaged, key)
		m.Chunk("staged", item.Length)
		m.Stored("staged", item.Length)
	} else {
		out.Data = buf
		m.Chunk("sent", item.Length)
	}
	// The raw chunk is deduplicated under its work item's message ID, which
	// the coordinator makes unique per epoch and attempt: a redelivered item
	// is not sent twice, but a re-issued one travels again (its first copy
	// may be stuck with a dead compressor until the ack wait expires).
	msgID := msg.Headers().Get(jetstream.MsgIDHeader)
	if msgID == "" {
		msgID = fmt.Sprintf("%s.%d.%d", item.JobID, item.Index, item.Attempt)
	}
	return r.publishRaw(ctx, out, msgID, msg)
}

// unchanged reports, for a chunk whose previous snapshot named a hash, the
// size of the stored object it may be named by again: 0 when its bytes
// changed, or when the repository does not hold that object whole (deleted,
// truncated): then it is sent to be stored again, rather than committed
// unseen into the new snapshot.
func (r *Reader) unchanged(ctx context.Context, item *queue.ReadItem, buf []byte) (int64, error) {
	id := chunk.Sum(buf)
	if id.String() != item.ParentHash {
		return 0, nil
	}
	repo, err := r.cfg.Repos.Get(ctx, item.Repo, false)
	if err != nil {
		return 0, fmt.Errorf("chunk %d: %w", item.Index, err)
	}
	stat, err := repo.StatChunk(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("chunk %d: %w", item.Index, err)
	}
	if !stat.Usable(item.ParentStored) {
		r.logger.WarnContext(ctx, "unchanged chunk is not stored whole; sending it to be stored again", "job_id", item.JobID,
			"chunk_id", item.ParentHash, "state", stat.State.String(), "size", stat.Size, "recorded", item.ParentStored, "problem", stat.Problem)
		return 0, nil
	}
	return stat.Size, nil
}

// readPieces fills buf with a files-mode chunk's pieces. Files that cannot
// be read or changed are reported (before the chunk itself completes, so the
// coordinator has them when it commits), not failed: the backup goes on.
func (r *Reader) readPieces(ctx context.Context, item *queue.ReadItem, buf []byte) error {
	var sum int64
	for _, p := range item.Pieces {
		sum += p.Length
	}
	if sum != item.Length {
		return fmt.Errorf("chunk %d: pieces hold %d bytes, the item says %d", item.Index, sum, item.Length)
	}
	problems, err := source.ReadPieces(item.Path, item.Pieces, buf)
	if err != nil || len(problems) == 0 {
		return err
	}
	d := &queue.Done{JobID: item.JobID, Op: queue.OpProblems, Index: item.Index}
	for _, p := range problems {
		d.Problems = append(d.Problems, queue.FileProblem{Path: p.Path, Unread: p.Unread, Error: p.Err})
		r.logger.WarnContext(ctx, "file problem", "job_id", item.JobID, "path", p.Path, "err", p.Err)
	}
	return r.publishDone(ctx, d)
}

// scanBatchBytes bounds the encoded entries of one scan batch, well inside
// a NATS message.
const scanBatchBytes = 256 << 10

// scan lists a tree and reports it in batches, then how many batches the
// scan sent. A scan that fails (the root is gone or not a directory) fails
// the job; single entries that cannot be read are part of the listing.
func (r *Reader) scan(ctx context.Context, msg jetstream.Msg, item *queue.ScanItem) error {
	var (
		batch    []manifest.Entry
		bytes    int
		batches  int
		problems []queue.FileProblem
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		d := &queue.Done{JobID: item.JobID, Op: queue.OpScanPart, Target: item.Attempt, Index: batches, Entries: batch}
		if err := r.publishDone(ctx, d); err != nil {
			return &publishError{err}
		}
		batches++
		batch, bytes = nil, 0
		_ = msg.InProgress() // a large tree takes longer than the ack wait
		return nil
	}
	emit := func(e manifest.Entry) error {
		batch = append(batch, e)
		bytes += 160 + len(e.Path) + len(e.Target) + len(e.LinkTo) + len(e.Warning)
		r.bytes.Add(1)
		if bytes >= scanBatchBytes {
			return flush()
		}
		return nil
	}
	warn := func(w string) {
		if len(problems) < queue.MaxWarnings {
			problems = append(problems, queue.FileProblem{Path: "", Error: w})
		}
	}
	err := source.ScanTree(ctx, item.Path, emit, warn)
	if err == nil {
		err = flush()
	}
	var pe *publishError
	if err != nil {
		if ctx.Err() != nil || errors.As(err, &pe) {
			return err // redelivered: the scan runs again
		}
		return r.fail(ctx, &queue.Done{JobID: item.JobID, Op: queue.OpScan, Error: err.Error()})
	}
	return r.publishDone(ctx, &queue.Done{JobID: item.JobID, Op: queue.OpScan, Batches: batches, Attempt: item.Attempt, Problems: problems})
}

// publishError is a failure to record work done, worth retrying, as opposed
// to a failure of the work itself.
type publishError struct{ err error }

func (e *publishError) Error() string { return e.err.Error() }
func (e *publishError) Unwrap() error { return e.err }

func readChunk(path string, buf []byte, off int64) error {
	vol, err := source.OpenVolume(path)
	if err != nil {
		return err
	}
	defer vol.Close()
	_, err = vol.ReadAt(buf, off)
	return err
}

// rawGate paces one reader's publishes to the raw queue while it is full.
// A refused publish has already carried the whole chunk to the server, so
// rather than every worker retrying its chunk, one worker at a time waits
// for room by asking how full the stream is (a small request) and then
// publishes; the others queue behind it without sending anything.
type rawGate struct {
	turn    chan struct{} // holds a token while a worker waits for room
	waiting atomic.Int32  // workers queued or waiting
}

func newRawGate() *rawGate { return &rawGate{turn: make(chan struct{}, 1)} }

// enter waits for this worker's turn, keeping its work item alive.
func (g *rawGate) enter(ctx context.Context, keepAlive *keeper) error {
	tick := time.NewTicker(keepAliveEvery)
	defer tick.Stop()
	for {
		select {
		case g.turn <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			keepAlive.tick()
		}
	}
}

func (g *rawGate) leave() { <-g.turn }

// publishRaw publishes a raw chunk, waiting while the raw queue is full or
// the server briefly unreachable. It keeps the work item alive meanwhile.
func (r *Reader) publishRaw(ctx context.Context, out *nats.Msg, msgID string, work jetstream.Msg) error {
	keepAlive := keeper{work: work, last: time.Now()}
	if r.gate.waiting.Load() == 0 { // nobody is waiting for room: try at once
		err := r.publishOnce(ctx, out, msgID, &keepAlive)
		if !errors.Is(err, errRawFull) {
			return err
		}
	}
	r.gate.waiting.Add(1)
	defer r.gate.waiting.Add(-1)
	if err := r.gate.enter(ctx, &keepAlive); err != nil {
		return err
	}
	defer r.gate.leave()
	for {
		if err := waitForRoom(ctx, r.js, msgSize(out), &keepAlive); err != nil {
			return err
		}
		if err := r.publishOnce(ctx, out, msgID, &keepAlive); !errors.Is(err, errRawFull) {
			return err
		}
	}
}

// errRawFull reports that the raw queue refused a chunk for lack of room.
var errRawFull = errors.New("raw queue full")

// publishOnce publishes out, retrying with backoff only while the server
// does not answer; a full raw queue is returned as errRawFull.
func (r *Reader) publishOnce(ctx context.Context, out *nats.Msg, msgID string, keepAlive *keeper) error {
	delay := 5 * time.Millisecond
	for {
		_, err := r.js.PublishMsg(ctx, out, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(queue.StreamRaw))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum") {
			return errRawFull
		}
		transient := errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
		if !transient {
			return fmt.Errorf("publish %s: %w", out.Subject, err)
		}
		keepAlive.tick()
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// Polling bounds of waitForRoom: the first check comes soon (a compressor
// finishes a chunk every few milliseconds), later ones no more often than a
// chunk is likely to be freed.
const (
	roomPollMin = time.Millisecond
	roomPollMax = 20 * time.Millisecond
)

// waitForRoom returns once the raw stream has room for a message of n
// bytes, or when its state cannot be read (the publish that follows then
// reports what is wrong).
func waitForRoom(ctx context.Context, js jetstream.JetStream, n int, keepAlive *keeper) error {
	stream, err := js.Stream(ctx, queue.StreamRaw)
	if err != nil {
		return nil
	}
	delay := roomPollMin
	for {
		keepAlive.tick()
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		info, err := stream.Info(ctx)
		if err != nil {
			return nil
		}
		if max := info.Config.MaxBytes; max <= 0 || info.State.Bytes+uint64(n) <= uint64(max) {
			return nil
		}
		delay = min(2*delay, roomPollMax)
	}
}

// msgSize estimates what a message takes of a stream's byte limit: its
// payload, subject and headers.
func msgSize(m *nats.Msg) int {
	n := len(m.Subject) + len(m.Data) + 64
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// keeper tells the server a work item is still being worked on while its
// chunk waits for room, so that it is not redelivered meanwhile.
type keeper struct {
	work jetstream.Msg
	last time.Time
}

// keepAliveEvery is how often a waiting work item is reported in progress,
// well inside the work consumer's AckWait.
const keepAliveEvery = 15 * time.Second

func (k *keeper) tick() {
	if time.Since(k.last) > keepAliveEvery {
		_ = k.work.InProgress()
		k.last = time.Now()
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// write performs one restore step.
func (r *Reader) write(ctx context.Context, item *queue.WriteItem) error {
	t := restore.Target{Path: item.Path, JobID: item.JobID, Size: item.Size, Overwrite: item.Overwrite, Keep: item.Keep, Mode: item.FileMode}
	done := &queue.Done{JobID: item.JobID, Op: item.Op, Index: item.Index, Target: item.Target, Length: item.Length}
	fail := func(err error) error {
		if !restore.Permanent(err) && !queue.IsPermanent(err) {
			return err // retried: the repository may be briefly unreachable
		}
		done.Error = err.Error()
		return r.fail(ctx, done)
	}
	switch item.Op {
	case queue.WritePrepare:
		v, err := restore.Prepare(t)
		if err != nil {
			return fail(err)
		}
		done.Device = v.Device()
		r.volumes.put(item.JobID, item.Target, v)
	case queue.WriteChunk:
		c := restore.Chunk{Offset: item.Offset, Length: item.Length, Zero: item.Zero}
		if !item.Zero {
			id, err := chunk.ParseID(item.Hash)
			if err != nil {
				return fail(queue.Permanent(err))
			}
			c.ID = id
		}
		repo, err := r.cfg.Repos.Get(ctx, item.Repo, false)
		if err != nil {
			return err // retried: the repository may be briefly unreachable
		}
		v, err := r.volumes.get(item.JobID, item.Target, t)
		if err != nil {
			return fail(err)
		}
		defer r.cfg.Metrics.Begin("write")()
		start := time.Now()
		buf := r.buffer(item.Length)[:0]
		buf, err = v.WriteChunk(ctx, repo, c, buf)
		r.release(buf)
		r.cfg.Metrics.Stage("write", start)
		if err != nil {
			r.cfg.Metrics.Error("write")
			return fail(err)
		}
		r.cfg.Metrics.Chunk("written", item.Length)
		r.bytes.Add(item.Length)
	case queue.WriteFinish:
		var err error
		if v := r.volumes.take(item.JobID, item.Target); v != nil {
			err = v.Finish()
		} else {
			err = restore.Finish(t)
		}
		if err != nil {
			done.Error = err.Error()
			return r.fail(ctx, done)
		}
	case queue.WriteEntries, queue.WriteExtents, queue.WriteMetadata, queue.WriteLinks, queue.WriteDirs:
		done.Length = 0 // progress counts the file bytes written
		for _, p := range item.Parts {
			done.Length += p.Length
		}
		if err := r.writeTree(ctx, item); err != nil {
			return fail(err)
		}
	case queue.WriteAbort:
		var err error
		if item.Tree {
			err = restore.Tree{Path: item.Path, JobID: item.JobID}.Abort()
		} else {
			if v := r.volumes.take(item.JobID, item.Target); v != nil {
				v.Close()
			}
			err = restore.Abort(t)
		}
		if err != nil {
			r.logger.WarnContext(ctx, "abort restore", "job_id", item.JobID, "err", err)
		}
		// Reported, so the coordinator knows the partial files are gone
		// before it ends the job; an error here fails nothing more.
	default:
		return queue.Permanent(fmt.Errorf("unknown write op %q", item.Op))
	}
	return r.publishDone(ctx, done)
}

// writeTree performs one step of a files-mode restore.
func (r *Reader) writeTree(ctx context.Context, item *queue.WriteItem) error {
	t := restore.Tree{Path: item.Path, JobID: item.JobID, Overwrite: item.Overwrite, Keep: item.Keep}
	switch item.Op {
	case queue.WriteEntries:
		return t.CreateEntries(item.Entries)
	case queue.WriteMetadata:
		return t.SetMetadata(item.Entries)
	case queue.WriteLinks:
		return t.MakeLinks(item.Entries)
	case queue.WriteDirs:
		return t.SetDirs(item.Entries)
	}
	id, err := chunk.ParseID(item.Hash)
	if err != nil {
		return queue.Permanent(err)
	}
	repo, err := r.cfg.Repos.Get(ctx, item.Repo, false)
	if err != nil {
		return err // retried: the repository may be briefly unreachable
	}
	defer r.cfg.Metrics.Begin("write")()
	start := time.Now()
	buf := r.buffer(item.Length)[:0]
	buf, err = t.WriteExtents(ctx, repo, id, item.Length, item.Parts, buf)
	r.release(buf)
	r.cfg.Metrics.Stage("write", start)
	if err != nil {
		r.cfg.Metrics.Error("write")
		return err
	}
	r.cfg.Metrics.Chunk("written", item.Length)
	r.bytes.Add(item.Length)
	return nil
}

// fail records a permanent failure of one piece of work; the coordinator
// fails the job when it sees it.
func (r *Reader) fail(ctx context.Context, d *queue.Done) error {
	r.logger.ErrorContext(ctx, "work failed", "job_id", d.JobID, "op", d.Op, "index", d.Index, "err", d.Error)
	return r.publishDone(ctx, d)
}

func (r *Reader) publishDone(ctx context.Context, d *queue.Done) error {
	d.V = queue.MessageVersion
	d.Worker = "reader@" + r.cfg.Host
	if _, err := r.js.Publish(ctx, queue.DoneSubject(d.JobID), queue.Encode(d), jetstream.WithMsgID(queue.DoneMsgID(d))); err != nil {
		return fmt.Errorf("publish done: %w", err)
	}
	return nil
}
