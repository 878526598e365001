package reader

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
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
	r := &Reader{held: newHeldChunks(1 << 30), logger: slog.New(slog.DiscardHandler), cfg: Config{Workers: 1}}
	r.held.release = func([]byte) {}
	d, err := newDataServer(r, "127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.ln.Close() })
	r.data = d

	read := func(index int, off, n int64) queue.ReadChunk {
		return queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Index: index, Path: vol, Offset: off, Length: n}
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
