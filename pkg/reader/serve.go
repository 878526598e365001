package reader

import (
	"cmp"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// fetchHandler answers the compressors' FetchRequests, each on a goroutine
// owned by wg, within r.fetching (a request beyond waits in the
// subscription, which is the backpressure).
func (r *Reader) fetchHandler(ctx context.Context, wg *sync.WaitGroup) nats.MsgHandler {
	return func(m *nats.Msg) {
		select {
		case r.fetching <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-r.fetching }()
			var req queue.FetchRequest
			if err := queue.Decode(m.Data, &req); err != nil {
				respondFailure(m, queue.Failed(queue.CodeInvalid, "%v", err))
				return
			}
			data, sent, err := r.fetch(ctx, &req)
			if err != nil {
				respondFailure(m, failureOf(err))
				return
			}
			resp := nats.NewMsg(m.Reply)
			resp.Data = data
			sent(m.RespondMsg(resp) == nil)
		})
	}
}

func respondFailure(m *nats.Msg, f *queue.Failure) {
	resp := nats.NewMsg(m.Reply)
	resp.Header.Set(queue.HeaderCode, string(f.Code))
	resp.Header.Set(queue.HeaderError, f.Message)
	_ = m.RespondMsg(resp)
}

// fetch returns the bytes a request asks for, and a function to call once
// they are sent (or failed to be): from the chunk held, or, when this
// reader does not hold it (it restarted, or another reader of the host read
// it), read again. Until sent is called the bytes stay the caller's. The
// bytes of a chunk for an encrypted repository are sealed, so that only
// holders of its write key read them on the way (queue.FetchAAD).
func (r *Reader) fetch(ctx context.Context, req *queue.FetchRequest) (data []byte, sent func(ok bool), err error) {
	raw, read, rawSent, err := r.fetchRaw(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if !read.Sealed {
		return raw, rawSent, nil
	}
	key, err := r.handOverKey(ctx, read.Repo)
	if err != nil {
		rawSent(false)
		return nil, nil, err
	}
	buf := r.sealed.Get(len(raw) + keyring.StagingOverhead)
	sealed, err := key.SealStaging(buf[:0], req.JobID, raw, queue.FetchAAD(req))
	if err != nil {
		rawSent(false)
		r.sealed.Put(buf)
		return nil, nil, queue.Failed(queue.CodeFailed, "seal chunk %d: %v", req.Index, err)
	}
	return sealed, func(ok bool) {
		rawSent(ok)
		r.sealed.Put(buf)
	}, nil
}

// handOverKey returns the key that seals the chunks handed over for the
// encrypted repository named repo.
func (r *Reader) handOverKey(ctx context.Context, repo string) (*keyring.WriteKey, error) {
	rp, err := r.cfg.Repos.Get(ctx, repo, false)
	if err != nil {
		return nil, queue.Failed(queue.CodeFailed, "cannot seal a chunk for repository %s: %v", repo, err)
	}
	key, err := rp.HandOverKey()
	if err == nil && key == nil {
		err = fmt.Errorf("repository %s is not encrypted, but its chunks were to be sealed", repo)
	}
	if err != nil {
		return nil, queue.Failed(queue.CodeFailed, "%v", err)
	}
	return key, nil
}

// fetchRaw is fetch before sealing; it also returns the read of the chunk,
// the reader's own record when it holds the chunk.
func (r *Reader) fetchRaw(ctx context.Context, req *queue.FetchRequest) (data []byte, read *queue.ReadChunk, sent func(ok bool), err error) {
	k := heldKey{job: req.JobID, index: req.Index}
	c, ok := r.held.borrow(k)
	if !ok {
		c, held, err := r.readAgain(ctx, req)
		if err != nil {
			return nil, nil, nil, err
		}
		done := func(bool) { r.release(c.data) }
		if held { // held for its other parts, and borrowed for this one
			done = func(ok bool) {
				n := int64(0)
				if ok {
					n = req.Length
				}
				r.held.giveBack(k, c, n)
			}
		}
		if !partOf(req.Offset, req.Length, int64(len(c.data))) {
			done(false)
			return nil, nil, nil, queue.Failed(queue.CodeInvalid, "chunk %d holds %d bytes: no [%d,+%d) in it", req.Index, len(c.data), req.Offset, req.Length)
		}
		return c.data[req.Offset : req.Offset+req.Length], &c.read, done, nil
	}
	if !partOf(req.Offset, req.Length, int64(len(c.data))) {
		r.held.giveBack(k, c, 0)
		return nil, nil, nil, queue.Failed(queue.CodeInvalid, "chunk %d holds %d bytes: no [%d,+%d) in it", req.Index, len(c.data), req.Offset, req.Length)
	}
	r.cfg.Metrics.Chunk("fetched", req.Length)
	return c.data[req.Offset : req.Offset+req.Length], &c.read, func(ok bool) {
		if ok {
			r.held.giveBack(k, c, req.Length)
		} else {
			r.held.giveBack(k, c, 0)
		}
	}, nil
}

// readAgain reads a chunk asked for that is not held, into a buffer of the
// reader's pool. A chunk fetched in parts is then held, when there is room,
// for its other parts, and borrowed by the caller (held: end it with
// giveBack); otherwise its buffer is the caller's to release.
func (r *Reader) readAgain(ctx context.Context, req *queue.FetchRequest) (c *heldChunk, held bool, err error) {
	item := req.Read
	if item.JobID != req.JobID || item.Index != req.Index || item.Length <= 0 {
		return nil, false, queue.Failed(queue.CodeInvalid, "fetch of chunk %d names another chunk's read", req.Index)
	}
	buf := r.buffer(item.Length)
	if _, err := readChunk(&item, buf); err != nil {
		r.release(buf)
		return nil, false, queue.Failed(queue.CodeSource, "%v", err)
	}
	r.cfg.Metrics.Chunk("reread", item.Length)
	r.logger.DebugContext(ctx, "chunk read again for a fetch", "job_id", req.JobID, "index", req.Index)
	c = &heldChunk{data: buf, read: item, at: time.Now()}
	if req.Offset+req.Length < item.Length && r.held.tryAcquire(item.Length) {
		// Borrowed as it is held: the part the caller sends now counts as
		// served only once sent, and the buffer is not given back while it
		// is sent, even if the chunk stops being held meanwhile.
		r.held.putInUse(heldKey{job: req.JobID, index: req.Index}, c)
		held = true
	}
	return c, held, nil
}

// partOf reports whether [off, off+n) lies in [0, size).
func partOf(off, n, size int64) bool { return off >= 0 && n >= 0 && off <= size && n <= size-off }

// failureOf is the Failure an error of serving a fetch answers with.
func failureOf(err error) *queue.Failure {
	var f *queue.Failure
	if errors.As(err, &f) {
		return f
	}
	return queue.Failed(queue.CodeFailed, "%v", err)
}

// dataServer serves held chunks over HTTP: a compressor that reaches it
// fetches a chunk with one request on a connection of its own, which costs
// both sides and the network a fraction of the trip through a NATS server
// (docs/benchmarks.md). Each request shows a token only the chunk's
// descriptor carries.
type dataServer struct {
	r      *Reader
	ln     net.Listener
	srv    *http.Server
	url    string
	secret [32]byte
}

// fetchPath is the data server's one endpoint: POST a FetchRequest, get the
// bytes.
const fetchPath = "/v1/fetch"

func newDataServer(r *Reader, addr, advertise string) (*dataServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("data server: %w", err)
	}
	d := &dataServer{r: r, ln: ln, secret: newSecret(), url: "http://" + cmp.Or(advertise, ln.Addr().String())}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+fetchPath, d.handleFetch)
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return d, nil
}

// directURL is where compressors fetch this reader's chunks over HTTP, or
// "" when it has no data server.
func (r *Reader) directURL() string {
	if r.data == nil {
		return ""
	}
	return r.data.url + fetchPath
}

// serve serves until ctx ends.
func (d *dataServer) serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = d.srv.Shutdown(shutdownCtx)
	}()
	if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		d.r.logger.ErrorContext(ctx, "data server stopped", "err", err)
	}
}

func (d *dataServer) handleFetch(w http.ResponseWriter, req *http.Request) {
	var fr queue.FetchRequest
	body, err := io.ReadAll(io.LimitReader(req.Body, 2<<20))
	if err == nil {
		err = queue.Decode(body, &fr)
	}
	if err != nil {
		writeFailure(w, http.StatusBadRequest, queue.Failed(queue.CodeInvalid, "%v", err))
		return
	}
	if fr.Read.JobID != fr.JobID || fr.Read.Index != fr.Index || !hmac.Equal([]byte(fr.Token), []byte(d.token(&fr.Read))) {
		writeFailure(w, http.StatusForbidden, queue.Failed(queue.CodeDenied, "no valid token for chunk %d of job %s", fr.Index, fr.JobID))
		return
	}
	select {
	case d.r.fetching <- struct{}{}:
	case <-req.Context().Done():
		return
	}
	defer func() { <-d.r.fetching }()
	data, sent, err := d.r.fetch(req.Context(), &fr)
	if err != nil {
		writeFailure(w, http.StatusConflict, failureOf(err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, err = w.Write(data)
	sent(err == nil)
}

func writeFailure(w http.ResponseWriter, status int, f *queue.Failure) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": string(f.Code), "error": f.Message})
}
