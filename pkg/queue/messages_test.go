package queue_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/check"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/plan"
	"github.com/bulkbackup/bulkbackup/pkg/prune"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

func TestDecodeBackupRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		want    queue.BackupRequest
		wantErr error
		errText string // a substring of the error, when wantErr is set
	}{
		{
			name: "valid",
			data: `{"v":1,"job_id":"j1","source":{"host":"db1","path":"/dev/sdb"},"repo":"/r","chunk_size":65536,"level":"best","reply_to":"_INBOX.x"}`,
			want: queue.BackupRequest{
				V: 1, JobID: "j1", Source: queue.Endpoint{Host: "db1", Path: "/dev/sdb"},
				Repo: "/r", ChunkSize: 65536, Level: "best", ReplyTo: "_INBOX.x",
			},
		},
		{
			name: "valid with surrounding white space",
			data: " \n{\"v\":1,\"repo\":\"/r\"}\n\t ",
			want: queue.BackupRequest{V: 1, Repo: "/r"},
		},
		{name: "unknown field", data: `{"v":1,"repo":"/r","compress":true}`, wantErr: queue.ErrBadMessage, errText: "compress"},
		{name: "unknown nested field", data: `{"v":1,"source":{"host":"h","path":"/p","port":1}}`, wantErr: queue.ErrBadMessage, errText: "port"},
		{name: "missing version", data: `{"repo":"/r"}`, wantErr: queue.ErrBadMessage, errText: "version 0"},
		{name: "wrong version", data: `{"v":2,"repo":"/r"}`, wantErr: queue.ErrBadMessage, errText: "version 2"},
		{name: "trailing object", data: `{"v":1}{"v":1}`, wantErr: queue.ErrBadMessage, errText: "trailing"},
		{name: "trailing garbage", data: `{"v":1} x`, wantErr: queue.ErrBadMessage},
		{name: "trailing brace", data: `{"v":1}}`, wantErr: queue.ErrBadMessage},
		{name: "trailing bracket", data: `{"v":1}]`, wantErr: queue.ErrBadMessage},
		{name: "too large", data: `{"v":1,"repo":"` + strings.Repeat("x", 1<<20) + `"}`, wantErr: queue.ErrBadMessage, errText: "1 MiB"},
		{name: "not JSON", data: `hello`, wantErr: queue.ErrBadMessage},
		{name: "empty", data: ``, wantErr: queue.ErrBadMessage},
		{name: "null", data: `null`, wantErr: queue.ErrBadMessage},
		{name: "array", data: `[1]`, wantErr: queue.ErrBadMessage},
		{name: "truncated", data: `{"v":1,"repo":"/r"`, wantErr: queue.ErrBadMessage},
		{name: "wrong type", data: `{"v":1,"chunk_size":"4MiB"}`, wantErr: queue.ErrBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got queue.BackupRequest
			err := queue.Decode([]byte(tt.data), &got)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decode error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("Decode error = %q, want it to mention %q", err, tt.errText)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestDecodeEveryMessage checks that every message type decodes what Encode
// wrote and refuses a version it does not know.
func TestDecodeEveryMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     any
		decode func([]byte) (any, error) // into a new value of in's type
	}{
		{"BackupRequest", &queue.BackupRequest{V: 1, JobID: "j", Source: queue.Endpoint{Host: "h", Path: "/p"}, Repo: "/r"},
			func(b []byte) (any, error) { var v queue.BackupRequest; return &v, queue.Decode(b, &v) }},
		{"RestoreRequest", &queue.RestoreRequest{V: 1, Repo: "/r", Snapshot: "latest", Targets: []queue.Endpoint{{Host: "h", Path: "/t"}}, Overwrite: true},
			func(b []byte) (any, error) { var v queue.RestoreRequest; return &v, queue.Decode(b, &v) }},
		{"CancelRequest", &queue.CancelRequest{V: 1, JobID: "j"},
			func(b []byte) (any, error) { var v queue.CancelRequest; return &v, queue.Decode(b, &v) }},
		{"JobAccepted", &queue.JobAccepted{V: 1, JobID: "j", Error: "e"},
			func(b []byte) (any, error) { var v queue.JobAccepted; return &v, queue.Decode(b, &v) }},
		{"Job", &queue.Job{V: 1, ID: "j", Kind: queue.KindBackup, State: queue.StateQueued, Epoch: 2, Backup: &queue.BackupRequest{V: 1, Repo: "/r"}},
			func(b []byte) (any, error) { var v queue.Job; return &v, queue.Decode(b, &v) }},
		{"Event", &queue.Event{V: 1, JobID: "j", Kind: queue.KindRestore, State: queue.StateRunning, Message: "waiting"},
			func(b []byte) (any, error) { var v queue.Event; return &v, queue.Decode(b, &v) }},
		{"ReadChunk", &queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Path: "/p", Index: 3, Offset: 12288, Length: 4096, Attempt: 1, Repo: "/r",
			Parent: &queue.ParentChunk{Hash: "ab", StoredSize: 10}},
			func(b []byte) (any, error) { var v queue.ReadChunk; return &v, queue.Decode(b, &v) }},
		{"ScanTree", &queue.ScanTree{V: queue.WorkVersion, JobID: "j", Path: "/p", Attempt: 2},
			func(b []byte) (any, error) { var v queue.ScanTree; return &v, queue.Decode(b, &v) }},
		{"PrepareVolume", &queue.PrepareVolume{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Target: 1, Path: "/t"}, Size: 8192, Keep: []string{"k"}},
			func(b []byte) (any, error) { var v queue.PrepareVolume; return &v, queue.Decode(b, &v) }},
		{"WriteChunk", &queue.WriteChunk{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Index: 2, Path: "/t"}, Repo: "/r", Size: 8192, Offset: 4096, Length: 4096, Hash: "ab"},
			func(b []byte) (any, error) { var v queue.WriteChunk; return &v, queue.Decode(b, &v) }},
		{"FinishVolume", &queue.FinishVolume{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Path: "/t"}, Size: 8192, Overwrite: true},
			func(b []byte) (any, error) { var v queue.FinishVolume; return &v, queue.Decode(b, &v) }},
		{"AbortRestore", &queue.AbortRestore{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Path: "/t"}, Tree: true},
			func(b []byte) (any, error) { var v queue.AbortRestore; return &v, queue.Decode(b, &v) }},
		{"TreeEntries", &queue.TreeEntries{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Path: "/t"}, Entries: []manifest.Entry{{Path: "a", Type: manifest.TypeDir}}},
			func(b []byte) (any, error) { var v queue.TreeEntries; return &v, queue.Decode(b, &v) }},
		{"WriteExtents", &queue.WriteExtents{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Path: "/t"}, Repo: "/r", Hash: "ab", Length: 3,
			Parts: []plan.Extent{{Path: "a", ChunkOffset: 0, FileOffset: 0, Length: 3}}},
			func(b []byte) (any, error) { var v queue.WriteExtents; return &v, queue.Decode(b, &v) }},
		{"ChunkDone", &queue.ChunkDone{V: queue.WorkVersion, JobID: "j", Index: 7, Length: 4096, Hash: "ab", StoredSize: 100, New: true},
			func(b []byte) (any, error) { var v queue.ChunkDone; return &v, queue.Decode(b, &v) }},
		{"ScanDone", &queue.ScanDone{V: queue.WorkVersion, JobID: "j", Attempt: 1, Batches: 3, Warnings: []string{"w"}},
			func(b []byte) (any, error) { var v queue.ScanDone; return &v, queue.Decode(b, &v) }},
		{"StepDone", &queue.StepDone{V: queue.WorkVersion, JobID: "j", Op: queue.OpChunk, Index: 3, Length: 10},
			func(b []byte) (any, error) { var v queue.StepDone; return &v, queue.Decode(b, &v) }},
		{"WorkFailed", &queue.WorkFailed{V: queue.WorkVersion, JobID: "j", Op: queue.OpRead, Index: 3, Code: queue.CodeSource, Message: "m"},
			func(b []byte) (any, error) { var v queue.WorkFailed; return &v, queue.Decode(b, &v) }},
		{"ChunkReady", &queue.ChunkReady{V: queue.WorkVersion, JobID: "j", Index: 1, Length: 5, Host: "h", Read: queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Index: 1, Length: 5}, Direct: "http://x/v1/fetch", Token: "t"},
			func(b []byte) (any, error) { var v queue.ChunkReady; return &v, queue.Decode(b, &v) }},
		{"FetchRequest", &queue.FetchRequest{V: queue.WorkVersion, JobID: "j", Index: 1, Offset: 2, Length: 3, Read: queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Index: 1, Length: 5}},
			func(b []byte) (any, error) { var v queue.FetchRequest; return &v, queue.Decode(b, &v) }},
		{"PruneRequest", &queue.PruneRequest{V: 1, JobID: "j", Repo: "/r", DryRun: true},
			func(b []byte) (any, error) { var v queue.PruneRequest; return &v, queue.Decode(b, &v) }},
		{"CheckRequest", &queue.CheckRequest{V: 1, JobID: "j", Repo: "/r", ReadData: true, Subset: 0.1},
			func(b []byte) (any, error) { var v queue.CheckRequest; return &v, queue.Decode(b, &v) }},
		{"PruneJob", &queue.Job{V: 1, ID: "j", Kind: queue.KindPrune, State: queue.StateRunning, Prune: &queue.PruneRequest{V: 1, Repo: "/r"},
			Pruned: &repository.PruneState{V: 1, ID: "j", Phase: repository.PhaseSweeping, Shards: 16, Condemned: 3}},
			func(b []byte) (any, error) { var v queue.Job; return &v, queue.Decode(b, &v) }},
		{"CheckJob", &queue.Job{V: 1, ID: "j", Kind: queue.KindCheck, State: queue.StateSucceeded, Check: &queue.CheckRequest{V: 1, Repo: "/r"},
			Checked: &queue.CheckReport{Result: check.Result{Missing: 1, Findings: []check.Finding{{Chunk: "ab", State: check.StateMissing}}},
				Shards: 16, Affected: []queue.AffectedSnapshot{{ID: "s", Chunks: 1, Files: []string{"a"}, FilesTotal: 1}}}},
			func(b []byte) (any, error) { var v queue.Job; return &v, queue.Decode(b, &v) }},
		{"CondemnShard", &queue.CondemnShard{V: queue.WorkVersion, JobID: "j", Repo: "/r", Prune: "j", Shard: 3},
			func(b []byte) (any, error) { var v queue.CondemnShard; return &v, queue.Decode(b, &v) }},
		{"SweepShard", &queue.SweepShard{V: queue.WorkVersion, JobID: "j", Repo: "/r", Prune: "j", Shard: 3},
			func(b []byte) (any, error) { var v queue.SweepShard; return &v, queue.Decode(b, &v) }},
		{"CheckShard", &queue.CheckShard{V: queue.WorkVersion, JobID: "j", Repo: "/r", Shard: 3, Shards: 16, ReadData: true, Subset: 0.5, Seed: 7},
			func(b []byte) (any, error) { var v queue.CheckShard; return &v, queue.Decode(b, &v) }},
		{"CondemnDone", &queue.CondemnDone{V: queue.WorkVersion, JobID: "j", Shard: 3, Result: prune.CondemnResult{Token: "t", Chunks: 9, Condemned: 2}},
			func(b []byte) (any, error) { var v queue.CondemnDone; return &v, queue.Decode(b, &v) }},
		{"SweepDone", &queue.SweepDone{V: queue.WorkVersion, JobID: "j", Shard: 3, Result: repository.ShardResult{Deleted: 2, Kept: 1}},
			func(b []byte) (any, error) { var v queue.SweepDone; return &v, queue.Decode(b, &v) }},
		{"CheckDone", &queue.CheckDone{V: queue.WorkVersion, JobID: "j", Shard: 3, Result: check.Result{Referenced: 4, Damaged: 1}},
			func(b []byte) (any, error) { var v queue.CheckDone; return &v, queue.Decode(b, &v) }},
		{"TaskAlive", &queue.TaskAlive{V: queue.WorkVersion, JobID: "j", Op: queue.TaskCheck, Shard: 3},
			func(b []byte) (any, error) { var v queue.TaskAlive; return &v, queue.Decode(b, &v) }},
		{"StatRequest", &queue.StatRequest{V: 1, Path: "/p"},
			func(b []byte) (any, error) { var v queue.StatRequest; return &v, queue.Decode(b, &v) }},
		{"StatReply", &queue.StatReply{V: 1, Size: 10, Kind: "file"},
			func(b []byte) (any, error) { var v queue.StatReply; return &v, queue.Decode(b, &v) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := queue.Encode(tt.in)
			got, err := tt.decode(data)
			if err != nil {
				t.Fatalf("Decode(Encode(%+v)): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("Decode(Encode(v)) = %+v, want %+v", got, tt.in)
			}
			// Client messages are version 1, the fleet's work messages
			// WorkVersion: each refuses the other's and any later one.
			future := bytes.Replace(data, []byte(`"v":1`), []byte(`"v":99`), 1)
			future = bytes.Replace(future, fmt.Appendf(nil, `"v":%d`, queue.WorkVersion), []byte(`"v":99`), 1)
			if _, err := tt.decode(future); !errors.Is(err, queue.ErrBadMessage) {
				t.Errorf("Decode of version 99 = %v, want %v", err, queue.ErrBadMessage)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    queue.Endpoint
		wantErr error // nil: success; errAny: any error
	}{
		{name: "device", in: "db1:/dev/sdb", want: queue.Endpoint{Host: "db1", Path: "/dev/sdb"}},
		{name: "path with colon", in: "db1:/data/a:b.img", want: queue.Endpoint{Host: "db1", Path: "/data/a:b.img"}},
		{name: "host with dash and underscore", in: "db-1_a:/x", want: queue.Endpoint{Host: "db-1_a", Path: "/x"}},
		{name: "missing colon", in: "db1/dev/sdb", wantErr: errAny},
		{name: "empty", in: "", wantErr: errAny},
		{name: "empty host", in: ":/dev/sdb", wantErr: errAny},
		{name: "empty path", in: "db1:", wantErr: errAny},
		{name: "relative path", in: "db1:dev/sdb", wantErr: errAny},
		{name: "host with dots", in: "db1.example.com:/dev/sdb", wantErr: queue.ErrBadToken},
		{name: "host with space", in: "db 1:/dev/sdb", wantErr: queue.ErrBadToken},
		{name: "host wildcard", in: "*:/dev/sdb", wantErr: queue.ErrBadToken},
		{name: "host full wildcard", in: ">:/dev/sdb", wantErr: queue.ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := queue.ParseEndpoint(tt.in)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("ParseEndpoint(%q): %v", tt.in, err)
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("ParseEndpoint(%q) = %+v, %v; want error %v", tt.in, got, err, tt.wantErr)
			case tt.wantErr != nil:
				if !strings.Contains(err.Error(), tt.in[:strings.IndexByte(tt.in+":", ':')]) {
					t.Errorf("ParseEndpoint(%q) error %q does not name the bad input", tt.in, err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("ParseEndpoint(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

// errAny, as a wantErr, accepts any non-nil error.
var errAny = errors.New("any error")

func TestCheckToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		wantOK bool
	}{
		{"db1", true},
		{"A-z_0-9", true},
		{"0123e4567-e89b-12d3-a456-426614174000", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"a.b", false},
		{"a b", false},
		{"a*", false},
		{"a>", false},
		{"a/b", false},
		{"a:b", false},
		{"a\n", false},
		{"a\x00", false},
		{"h\u00f6st", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			err := queue.CheckToken("host", tt.in)
			if tt.wantOK {
				if err != nil {
					t.Errorf("CheckToken(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if !errors.Is(err, queue.ErrBadToken) {
				t.Fatalf("CheckToken(%q) = %v, want %v", tt.in, err, queue.ErrBadToken)
			}
			if !strings.Contains(err.Error(), "host") {
				t.Errorf("CheckToken error %q does not say what was checked", err)
			}
		})
	}
}

func FuzzDecodeBackupRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"job_id":"j1","source":{"host":"db1","path":"/dev/sdb"},"repo":"/r","chunk_size":65536,"level":"best","reply_to":"_INBOX.x"}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"repo":"\ud800\u00e9"}`))
	f.Add([]byte(`{"V":1,"Repo":"/r","REPO":"/s"}`))
	f.Add([]byte(`{"v":1}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"source":null,"chunk_size":-1e3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req queue.BackupRequest
		if err := queue.Decode(data, &req); err != nil {
			if !errors.Is(err, queue.ErrBadMessage) {
				t.Fatalf("Decode error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		var again queue.BackupRequest
		if err := queue.Decode(queue.Encode(&req), &again); err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", req, err)
		}
		if !reflect.DeepEqual(req, again) {
			t.Fatalf("round trip changed the request: %+v, then %+v", req, again)
		}
	})
}
