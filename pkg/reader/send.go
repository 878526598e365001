package reader

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// send stores a chunk that must be stored: in this process when its
// compressor has a worker free (or, without Overflow, once it has), else by
// holding it for the fleet's compressors and announcing it on the ready
// stream. It reports whether buf is now held, and so owned by the held
// chunks (until fetched or dropped): then the caller must not reuse it,
// even when the announcement failed.
func (r *Reader) send(ctx context.Context, msg jetstream.Msg, item *queue.ReadChunk, buf []byte) (bool, error) {
	m := r.cfg.Metrics
	if c := r.cfg.Compress; c != nil {
		if !r.cfg.Overflow {
			m.Chunk("sent", item.Length) // to the compressor, in memory
			err := c.Store(ctx, item.JobID, item.Index, buf)
			if err == nil {
				r.storedHere.Add(1)
			}
			return false, err
		}
		stored, err := c.TryStore(ctx, item.JobID, item.Index, buf)
		if stored || err != nil {
			m.Chunk("sent", item.Length)
			if err == nil {
				r.storedHere.Add(1)
			}
			return false, err
		}
	}
	key := heldKey{job: item.JobID, index: item.Index}
	if err := r.held.acquire(ctx, r.stopping, item.Length, keeper(msg)); err != nil {
		return false, err
	}
	ready := &queue.ChunkReady{
		V: queue.WorkVersion, JobID: item.JobID, Index: item.Index, Length: item.Length, Host: r.cfg.Host,
		Read: *item, Direct: r.directURL(), Token: r.data.token(item), CRC32C: queue.ChunkCRC(buf),
	}
	held := &heldChunk{data: buf, read: *item, at: time.Now()}
	r.held.put(key, held)
	ack, err := r.js.Publish(ctx, queue.ReadySubject(item.JobID), queue.Encode(ready), jetstream.WithMsgID(queue.ChunkReadyMsgID(ready)))
	if err != nil {
		// The buffer is the held chunks' now, never the caller's again: the
		// announcement may have been stored after all (a timeout) and a
		// compressor be fetching the chunk, or another read of the same
		// chunk (a re-issue) may have replaced it and freed the buffer.
		// Dropping it gives the buffer back once no fetch sends from it,
		// and only if it is still this chunk's.
		r.held.drop(key, held)
		return true, fmt.Errorf("announce chunk %d: %w", item.Index, err)
	}
	r.held.announced(held, ack.Sequence)
	if ack.Duplicate && r.taken(ctx, ack.Sequence) {
		// This item was delivered again after its chunk was announced
		// and taken by a compressor (so its completion is recorded): the
		// announcement was deduplicated, and nobody will fetch the chunk.
		r.held.drop(key, held)
		return true, nil
	}
	m.Chunk("sent", item.Length)
	return true, nil
}

// taken reports whether the descriptor at seq is gone from the ready
// stream: a compressor took it (or the job ended).
func (r *Reader) taken(ctx context.Context, seq uint64) bool {
	stream, err := r.js.Stream(ctx, queue.StreamReady)
	if err != nil {
		return false // dropOrphans looks again later
	}
	_, err = stream.GetMsg(ctx, seq)
	return errors.Is(err, jetstream.ErrMsgNotFound)
}

// dropOrphans drops, every orphanCheck until ctx ends, the held chunks
// whose descriptors are gone from the ready stream although no compressor
// fetched them: the job ended (its descriptors are purged), or the
// descriptor was lost with a NATS server that died before writing it. Such
// a chunk would take a place of the window until holdExpiry, and with all
// places taken by them, the reader would wait for room that never comes.
func (r *Reader) dropOrphans(ctx context.Context) {
	for sleep(ctx, orphanCheck) == nil {
		stale := r.held.announcedBefore(time.Now().Add(-orphanCheck))
		if len(stale) == 0 {
			continue
		}
		stream, err := r.js.Stream(ctx, queue.StreamReady)
		if err != nil {
			continue
		}
		for _, e := range stale {
			msg, err := stream.GetMsg(ctx, e.seq)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				continue // ask again next time
			default:
				var ready queue.ChunkReady
				if queue.Decode(msg.Data, &ready) == nil && ready.JobID == e.key.job && ready.Index == e.key.index {
					continue // still waiting for a compressor
				}
			}
			if r.held.drop(e.key, e.chunk) {
				r.logger.DebugContext(ctx, "dropped a held chunk whose descriptor is gone", "job_id", e.key.job, "index", e.key.index)
			}
		}
	}
}

// keeper returns a function that tells the server msg is still being
// worked on, at most every keepAliveEvery, while its chunk waits for room.
func keeper(msg jetstream.Msg) func() {
	last := time.Now()
	return func() {
		if time.Since(last) > keepAliveEvery {
			_ = msg.InProgress()
			last = time.Now()
		}
	}
}

// keepAliveEvery is how often a waiting work item is reported in progress,
// well inside the work consumer's AckWait.
const keepAliveEvery = 15 * time.Second

// Bounds of the held chunks.
const (
	// minHeld is how many chunks may be held while no compressor is seen
	// alive (before the first look at the fleet, or between its members).
	minHeld = 4
	// heldPerWorker is how many chunks are held per live compressor
	// worker: one it works on, one waiting for it, so it never waits for
	// the reader.
	heldPerWorker = 2
	// holdExpiry drops a chunk no compressor fetched for this long, as a
	// last resort (dropOrphans drops those whose descriptor is gone much
	// sooner): a later fetch reads it again.
	holdExpiry = 5 * time.Minute
	// orphanCheck is how often, and after how long, held chunks are
	// checked for descriptors that are gone.
	orphanCheck = 10 * time.Second
	// fleetPoll is how often the live compressors are counted: soon
	// after one joins, the window has room for it.
	fleetPoll = time.Second
)

type heldKey struct {
	job   string
	index int
}

// heldChunk is a chunk read and announced, waiting to be fetched.
type heldChunk struct {
	data   []byte
	read   queue.ReadChunk
	at     time.Time
	seq    uint64 // the descriptor's sequence in the ready stream; 0 before it is announced
	served int64  // bytes fetched so far, for chunks fetched in parts
	users  int    // fetches sending its bytes now: its buffer stays theirs
	gone   bool   // no longer held: its buffer goes back when the last user is done
}

// heldChunks are the chunks a reader holds for the compressors to fetch.
// How many it may hold follows the fleet: heldPerWorker per live
// compressor worker (at least minHeld), and never more than maxBytes. A
// chunk's buffer is reused only once no fetch is sending from it. It is
// safe for concurrent use.
type heldChunks struct {
	mu       sync.Mutex
	chunks   map[heldKey]*heldChunk
	reserved int   // chunks acquired, not put yet
	bytes    int64 // of the chunks held and reserved
	slots    int
	maxBytes int64
	freed    chan struct{} // closed and replaced when room is made
	release  func([]byte)  // takes back a released chunk's buffer
}

func newHeldChunks(maxBytes int64) *heldChunks {
	return &heldChunks{chunks: make(map[heldKey]*heldChunk), slots: minHeld, maxBytes: maxBytes, freed: make(chan struct{})}
}

// acquire waits until a chunk of n bytes may be held, calling keepAlive
// while it waits, or until ctx or stopping ends (shutdown: a chunk that
// waits for room is not work in flight, and is left to be read again). One
// chunk may always be held, whatever its size.
func (h *heldChunks) acquire(ctx, stopping context.Context, n int64, keepAlive func()) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if h.tryAcquire(n) {
			return nil
		}
		h.mu.Lock()
		freed := h.freed
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stopping.Done():
			return fmt.Errorf("reader stopping: %w", context.Cause(stopping))
		case <-freed:
		case <-tick.C:
			keepAlive()
		}
	}
}

// tryAcquire reserves room for a chunk of n bytes if there is some now.
func (h *heldChunks) tryAcquire(n int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expireLocked(time.Now())
	count := len(h.chunks) + h.reserved
	if count > 0 && (count >= h.slots || h.bytes+n > h.maxBytes) {
		return false
	}
	h.reserved++ // put fills it in
	h.bytes += n
	return true
}

// put holds c under k; acquire reserved its room.
func (h *heldChunks) put(k heldKey, c *heldChunk) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reserved--
	if old, ok := h.chunks[k]; ok { // announced again (re-issued): the newer read wins
		h.removeLocked(k, old)
	}
	h.chunks[k] = c
}

// announced records that c's descriptor is in the ready stream at seq.
func (h *heldChunks) announced(c *heldChunk, seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.seq = seq
}

// heldEntry is a held chunk and its key.
type heldEntry struct {
	key   heldKey
	chunk *heldChunk
	seq   uint64
}

// announcedBefore returns the chunks held whose descriptors were announced
// before t.
func (h *heldChunks) announcedBefore(t time.Time) []heldEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []heldEntry
	for k, c := range h.chunks {
		if c.seq > 0 && c.at.Before(t) {
			out = append(out, heldEntry{key: k, chunk: c, seq: c.seq})
		}
	}
	return out
}

// drop stops holding c under k, if it still is; it reports whether it was.
func (h *heldChunks) drop(k heldKey, c *heldChunk) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.chunks[k] != c {
		return false
	}
	h.removeLocked(k, c)
	return true
}

// borrow returns the chunk held under k, which stays the caller's until it
// calls giveBack.
func (h *heldChunks) borrow(k heldKey) (*heldChunk, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.chunks[k]
	if ok {
		c.users++
	}
	return c, ok
}

// giveBack ends a borrow that sent n bytes of the chunk (0 when sending
// failed); once all its bytes were sent, the chunk is released.
func (h *heldChunks) giveBack(k heldKey, c *heldChunk, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.users--
	c.served += n
	if !c.gone && c.served >= int64(len(c.data)) && h.chunks[k] == c {
		h.removeLocked(k, c)
	}
	h.freeLocked(c)
}

// putInUse is put for a chunk the caller is already sending from: it is
// borrowed (giveBack ends it), so that its buffer is not given back under
// the caller, whatever removes it meanwhile.
func (h *heldChunks) putInUse(k heldKey, c *heldChunk) {
	h.mu.Lock()
	c.users++
	h.mu.Unlock()
	h.put(k, c)
}

// removeLocked stops holding c, and gives back its buffer unless a fetch
// is still sending from it. Called with mu held.
func (h *heldChunks) removeLocked(k heldKey, c *heldChunk) {
	if h.chunks[k] == c {
		delete(h.chunks, k)
	}
	h.bytes -= int64(len(c.data))
	c.gone = true
	h.freeLocked(c)
	h.signalLocked()
}

// freeLocked gives back the buffer of a chunk no longer held once nobody
// sends from it.
func (h *heldChunks) freeLocked(c *heldChunk) {
	if c.gone && c.users == 0 && c.data != nil {
		if h.release != nil {
			h.release(c.data)
		}
		c.data = nil
	}
}

func (h *heldChunks) signalLocked() {
	close(h.freed)
	h.freed = make(chan struct{})
}

// expireLocked drops chunks held longer than holdExpiry. Called with mu
// held.
func (h *heldChunks) expireLocked(now time.Time) {
	for k, c := range h.chunks {
		if now.Sub(c.at) > holdExpiry {
			h.removeLocked(k, c)
		}
	}
}

// setSlots sets how many chunks may be held.
func (h *heldChunks) setSlots(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n = max(n, minHeld); n != h.slots {
		h.slots = n
		h.signalLocked()
	}
}

// followFleet counts the live compressors' workers every fleetPoll, until
// ctx ends, and lets the reader hold heldPerWorker chunks for each: adding
// compressors raises the window at once, with no flag or restart.
func (h *heldChunks) followFleet(ctx context.Context, js jetstream.JetStream) {
	for {
		if workers, err := queue.ListWorkers(ctx, js); err == nil {
			n := 0
			for _, w := range workers {
				if w.Role == queue.RoleCompressor {
					n += w.Workers
				}
			}
			h.setSlots(heldPerWorker * n)
		}
		if sleep(ctx, fleetPoll) != nil {
			return
		}
	}
}

// token returns the credential a compressor shows the data server to fetch
// the chunk read describes: a MAC of the whole read under the server's
// secret, which only the chunk's descriptor (on NATS, behind its
// authentication) carries. Covering the read, not just the chunk's number,
// keeps a request that shows it from having anything else read again.
func (d *dataServer) token(read *queue.ReadChunk) string {
	if d == nil {
		return ""
	}
	mac := hmac.New(sha256.New, d.secret[:])
	mac.Write(queue.Encode(read))
	return hex.EncodeToString(mac.Sum(nil))
}

// newSecret returns a random key for tokens.
func newSecret() (s [32]byte) {
	_, _ = rand.Read(s[:])
	return s
}
