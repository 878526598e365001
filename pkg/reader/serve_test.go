package reader

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/internal/bufpool"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// TestDataServer checks who may fetch what from a reader's data server: a
// request must show the token its chunk's descriptor carries, which covers
// the whole read, so it can neither fetch another chunk nor have anything
// else read again.
func TestDataServer(t *testing.T) {
	t.Parallel()
	vol := filepath.Join(t.TempDir(), "vol.img")
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	if err := os.WriteFile(vol, content, 0o600); err != nil {
		t.Fatal(err)
	}
	// No repositories: a plaintext repository's chunks are handed over
	// without opening it, which the reader may not be able to.
	r, d := dataServerOf(t, nil)

	read := func(index int, off, n int64) queue.ReadChunk {
		return queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Index: index, Path: vol, Offset: off, Length: n, Repo: "/elsewhere/repo"}
	}
	held := read(0, 0, 16)
	if !r.held.tryAcquire(16) {
		t.Fatal("no room")
	}
	r.held.put(heldKey{job: "j", index: 0}, &heldChunk{data: []byte("held chunk bytes"), read: held, at: time.Now()})
	notHeld := read(1, 4096, 8192)
	secret := read(2, 0, int64(len(content)))

	request := func(rd queue.ReadChunk, token string, off, n int64) *queue.FetchRequest {
		return &queue.FetchRequest{V: queue.WorkVersion, JobID: rd.JobID, Index: rd.Index, Offset: off, Length: n, Read: rd, Token: token}
	}
	otherFile := notHeld
	otherFile.Path = "/etc/passwd"
	otherJob := request(notHeld, d.token(&notHeld), 0, 10)
	otherJob.JobID = "k"
	tests := []struct {
		name       string
		body       []byte
		wantStatus int
		wantBody   []byte
		wantCode   queue.Code
	}{
		{"part of a held chunk", queue.Encode(request(held, d.token(&held), 5, 5)), http.StatusOK, []byte("chunk"), ""},
		{"held chunk", queue.Encode(request(held, d.token(&held), 0, 16)), http.StatusOK, []byte("held chunk bytes"), ""},
		{"chunk not held: read again", queue.Encode(request(notHeld, d.token(&notHeld), 0, 8192)), http.StatusOK, content[4096 : 4096+8192], ""},
		{"no token", queue.Encode(request(held, "", 0, 16)), http.StatusForbidden, nil, queue.CodeDenied},
		{"another chunk's token", queue.Encode(request(secret, d.token(&held), 0, 16)), http.StatusForbidden, nil, queue.CodeDenied},
		{"a read changed under its token", queue.Encode(request(otherFile, d.token(&notHeld), 0, 10)), http.StatusForbidden, nil, queue.CodeDenied},
		{"a request naming another job than its read", queue.Encode(otherJob), http.StatusForbidden, nil, queue.CodeDenied},
		{"part outside the chunk", queue.Encode(request(held, d.token(&held), 10, 10)), http.StatusConflict, nil, queue.CodeInvalid},
		{"not a request", []byte("{"), http.StatusBadRequest, nil, queue.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			d.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, fetchPath, bytes.NewReader(tt.body)))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body.String(), tt.wantStatus)
			}
			if tt.wantStatus == http.StatusOK {
				if !bytes.Equal(rec.Body.Bytes(), tt.wantBody) {
					t.Errorf("body %q, want %q", rec.Body.Bytes(), tt.wantBody)
				}
				return
			}
			var ans struct{ Code, Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || queue.Code(ans.Code) != tt.wantCode || ans.Error == "" {
				t.Errorf("answer %s (%v), want code %s and a message", rec.Body.String(), err, tt.wantCode)
			}
		})
	}
}

func openDir(ctx context.Context, repo string, create bool) (store.Store, error) {
	return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
}

// dataServerOf returns a reader with a data server (not serving: tests
// call its handler) that opens repositories with repos.
func dataServerOf(t *testing.T, repos *repository.Cache) (*Reader, *dataServer) {
	t.Helper()
	r := &Reader{held: newHeldChunks(1 << 30), bufs: bufpool.New(1, nil), sealed: bufpool.New(1, nil), fetching: make(chan struct{}, 1),
		logger: slog.New(slog.DiscardHandler), cfg: Config{Workers: 1, Repos: repos}}
	r.held.release = func([]byte) {}
	d, err := newDataServer(r, "127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.ln.Close() })
	r.data = d
	return r, d
}

// TestDataServerSeals: the chunks of an encrypted repository are handed
// over sealed under the job's key: the bytes on the wire are not the
// chunk's, they open with the repository's write key for that job and
// range only, and a reader without the key hands nothing over.
func TestDataServerSeals(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "repo")
	st, err := openDir(t.Context(), dir, true)
	if err != nil {
		t.Fatal(err)
	}
	_, keys := testenv.EncryptedRepository(t, st)
	holding := func(write *keyring.WriteKey) *repository.Cache {
		return repository.NewCache(openDir, repository.OpenOptions{Keys: func(repository.Config) (repository.Credentials, error) {
			if write == nil {
				return repository.Credentials{}, repository.ErrLocked
			}
			return repository.Credentials{Write: write}, nil
		}})
	}
	plain := []byte("the chunk's raw bytes, which no eavesdropper may read")
	fetch := func(r *Reader, d *dataServer, off, n int64) *httptest.ResponseRecorder {
		read := queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Index: 0, Length: int64(len(plain)), Repo: dir, Sealed: true}
		if !r.held.tryAcquire(read.Length) {
			t.Fatal("no room")
		}
		r.held.put(heldKey{job: "j", index: 0}, &heldChunk{data: plain, read: read, at: time.Now()})
		req := &queue.FetchRequest{V: queue.WorkVersion, JobID: "j", Index: 0, Offset: off, Length: n, Read: read, Token: d.token(&read)}
		rec := httptest.NewRecorder()
		d.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, fetchPath, bytes.NewReader(queue.Encode(req))))
		return rec
	}

	r, d := dataServerOf(t, holding(keys.WithoutMeta()))
	rec := fetch(r, d, 4, 10)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", rec.Code, rec.Body.String())
	}
	sealed := rec.Body.Bytes()
	if len(sealed) != 10+keyring.StagingOverhead || bytes.Contains(sealed, plain[4:14]) {
		t.Fatalf("handed over %d bytes %q: want the 10 asked for sealed, not in the clear", len(sealed), sealed)
	}
	asked := &queue.FetchRequest{JobID: "j", Index: 0, Offset: 4, Length: 10}
	got, err := keys.WithoutMeta().OpenStaging(nil, "j", sealed, queue.FetchAAD(asked))
	if err != nil || !bytes.Equal(got, plain[4:14]) {
		t.Errorf("opened %q (%v), want %q", got, err, plain[4:14])
	}
	for _, other := range []*queue.FetchRequest{
		{JobID: "k", Index: 0, Offset: 4, Length: 10},
		{JobID: "j", Index: 1, Offset: 4, Length: 10},
		{JobID: "j", Index: 0, Offset: 0, Length: 10},
	} {
		if _, err := keys.WithoutMeta().OpenStaging(nil, other.JobID, sealed, queue.FetchAAD(other)); err == nil {
			t.Errorf("the bytes of %+v open as %+v's", asked, other)
		}
	}

	r, d = dataServerOf(t, holding(nil))
	if rec := fetch(r, d, 0, 10); rec.Code == http.StatusOK {
		t.Errorf("a reader without the repository's key handed over %q", rec.Body.Bytes())
	}
}
