package queue_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestDecodeAll checks that DecodeAll names every problem of a message,
// keeps the fields it could read, and agrees with Decode on what is valid.
func TestDecodeAll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		data      string
		want      []string // each a substring of one problem, in order
		notObject bool
		bad       []string
		read      queue.BackupRequest
	}{
		{name: "valid", data: `{"v":1,"job_id":"j","source":{"host":"h","path":"/p"},"repo":"/r"}`,
			read: queue.BackupRequest{V: 1, JobID: "j", Source: queue.Endpoint{Host: "h", Path: "/p"}, Repo: "/r"}},
		{name: "everything wrong", data: `{"v":2,"job_id":"j","zz":1,"aa":2,"source":{"host":"h","port":1},"chunk_size":"4MiB","repo":"/r","level":5}`,
			want: []string{`unknown field "aa"`, `unknown field "zz"`, `source: unknown field "port"`,
				"chunk_size: want an integer, not a JSON string", "level: want a string, not a JSON number", "v: version 2"},
			bad:  []string{"source", "chunk_size", "level"},
			read: queue.BackupRequest{V: 2, JobID: "j", Repo: "/r"}},
		{name: "fields of embedded structs (selection, labels)", data: `{"v":1,"repo":"/r","exclude":["*.o"],"exclude_caches":true,"tags":["a"],"host":"h1"}`,
			read: queue.BackupRequest{V: 1, Repo: "/r", Selection: queue.Selection{Exclude: []string{"*.o"}, ExcludeCaches: true},
				Labels: queue.Labels{Tags: []string{"a"}, Host: "h1"}}},
		{name: "embedded field of the wrong type", data: `{"v":1,"exclude":"*.o","exclud":1}`,
			want: []string{`unknown field "exclud"`, "exclude: want an array, not a JSON string"}, bad: []string{"exclude"}, read: queue.BackupRequest{V: 1}},
		{name: "nested type", data: `{"v":1,"source":{"host":1,"path":"/p"}}`, want: []string{"source.host: want a string, not a JSON number"},
			bad: []string{"source"}, read: queue.BackupRequest{V: 1}},
		{name: "no version", data: `{"repo":"/r"}`, want: []string{"v: missing"}, read: queue.BackupRequest{Repo: "/r"}},
		{name: "not JSON", data: `{"v":1,`, want: []string{"not a JSON object"}, notObject: true},
		{name: "array", data: `[]`, want: []string{"not a JSON object: a JSON array"}, notObject: true},
		{name: "null", data: `null`, want: []string{"not a JSON object"}, notObject: true},
		{name: "trailing", data: `{"v":1}{}`, want: []string{"trailing data"}, notObject: true},
		{name: "too large", data: `{"repo":"` + strings.Repeat("x", 1<<20) + `"}`, want: []string{"more than 1 MiB"}, notObject: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got queue.BackupRequest
			r := queue.DecodeAll([]byte(tt.data), &got)
			if len(r.Problems) != len(tt.want) {
				t.Fatalf("problems %q, want %d: %q", r.Problems, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(r.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, r.Problems[i], w)
				}
			}
			if r.NotObject != tt.notObject || r.OK() != (len(tt.want) == 0) {
				t.Errorf("NotObject %v OK %v", r.NotObject, r.OK())
			}
			for _, f := range tt.bad {
				if !r.Bad(f) {
					t.Errorf("field %s not reported bad", f)
				}
			}
			if !tt.notObject && !reflect.DeepEqual(got, tt.read) {
				t.Errorf("read %+v, want %+v", got, tt.read)
			}
			if (queue.Decode([]byte(tt.data), &queue.BackupRequest{}) == nil) != r.OK() {
				t.Errorf("Decode and DecodeAll disagree on whether %q is valid", tt.data)
			}
		})
	}
}

// TestSchema checks the JSON Schema of a request: its fields and types,
// the required ones, and that no other field is allowed.
func TestSchema(t *testing.T) {
	t.Parallel()
	var s struct {
		Type       string `json:"type"`
		Required   []string
		Additional bool `json:"additionalProperties"`
		Properties map[string]struct {
			Type       string         `json:"type"`
			Const      *int           `json:"const"`
			Properties map[string]any `json:"properties"`
			Items      map[string]any `json:"items"`
			Format     string         `json:"format"`
		}
	}
	if err := json.Unmarshal([]byte(queue.Schema(&queue.RestoreRequest{})), &s); err != nil {
		t.Fatal(err)
	}
	if s.Type != "object" || s.Additional || strings.Join(s.Required, ",") != "v,repo,snapshot,targets" {
		t.Errorf("schema: %+v", s)
	}
	p := s.Properties
	if p["v"].Type != "integer" || p["v"].Const == nil || *p["v"].Const != queue.MessageVersion || p["overwrite"].Type != "boolean" ||
		p["targets"].Type != "array" || p["targets"].Items["type"] != "object" || p["paths"].Items["type"] != "string" {
		t.Errorf("properties: %+v", p)
	}
	if err := json.Unmarshal([]byte(queue.Schema(&queue.Job{})), &s); err != nil {
		t.Fatal(err)
	}
	if s.Properties["created"].Format != "date-time" || s.Properties["backup"].Properties["source"] == nil {
		t.Errorf("job schema properties: %+v", s.Properties)
	}
}

// TestRequestMsgID checks that Submit's deduplication ID tells requests of
// one job apart.
func TestRequestMsgID(t *testing.T) {
	t.Parallel()
	a := queue.RequestMsgID("j", []byte(`{"v":1,"repo":"/a"}`))
	b := queue.RequestMsgID("j", []byte(`{"v":1,"repo":"/b"}`))
	if a == b || a != queue.RequestMsgID("j", []byte(`{"v":1,"repo":"/a"}`)) || !strings.HasPrefix(a, "j.") {
		t.Errorf("RequestMsgID: %q, %q", a, b)
	}
}
