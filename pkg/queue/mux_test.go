package queue_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// subjectMsg is a message with only a subject and a body: what a Mux reads.
type subjectMsg struct {
	jetstream.Msg
	subject string
	data    []byte
}

func (m subjectMsg) Subject() string { return m.subject }
func (m subjectMsg) Data() []byte    { return m.data }

func TestMux(t *testing.T) {
	t.Parallel()
	var got []any
	mux := queue.NewMux(2)
	queue.HandleOp(mux, queue.OpRead, func(_ context.Context, _ jetstream.Msg, item *queue.ReadChunk) error {
		got = append(got, item)
		return nil
	})
	queue.HandleOp(mux, queue.OpChunk, func(_ context.Context, _ jetstream.Msg, item *queue.WriteChunk) error {
		got = append(got, item)
		return errors.New("handler failed")
	})
	read := &queue.ReadChunk{V: queue.WorkVersion, JobID: "j", Index: 4, Length: 10, Path: "/p"}
	write := &queue.WriteChunk{Step: queue.Step{V: queue.WorkVersion, JobID: "j", Path: "/t"}, Length: 3}
	tests := []struct {
		name          string
		subject       string
		data          []byte
		want          any  // what the handler got; nil: not called
		wantPermanent bool // the error is permanent (no redelivery fixes it)
		wantErr       bool
	}{
		{"read", queue.WorkSubject(queue.OpRead, "h", "j"), queue.Encode(read), read, false, false},
		{"handler error passes through", queue.WorkSubject(queue.OpChunk, "h", "j"), queue.Encode(write), write, false, true},
		{"unknown operation", queue.WorkSubject("erase", "h", "j"), queue.Encode(read), nil, true, true},
		{"body of another operation", queue.WorkSubject(queue.OpRead, "h", "j"), queue.Encode(write), nil, true, true},
		{"client version", queue.WorkSubject(queue.OpRead, "h", "j"), []byte(`{"v":1,"job_id":"j"}`), nil, true, true},
		{"not JSON", queue.WorkSubject(queue.OpRead, "h", "j"), []byte("{"), nil, true, true},
		{"short subject", "bulk.work", queue.Encode(read), nil, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			err := mux.Handle(t.Context(), subjectMsg{subject: tt.subject, data: tt.data})
			if (err != nil) != tt.wantErr || queue.IsPermanent(err) != tt.wantPermanent {
				t.Fatalf("Handle = %v (permanent %t), want error %t, permanent %t", err, queue.IsPermanent(err), tt.wantErr, tt.wantPermanent)
			}
			switch {
			case tt.want == nil && len(got) > 0:
				t.Errorf("handler called with %+v, want not called", got[0])
			case tt.want != nil && (len(got) != 1 || !reflect.DeepEqual(got[0], tt.want)):
				t.Errorf("handler got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMuxRegisterTwicePanics(t *testing.T) {
	t.Parallel()
	mux := queue.NewMux(2)
	h := func(context.Context, jetstream.Msg, *queue.ReadChunk) error { return nil }
	queue.HandleOp(mux, queue.OpRead, h)
	defer func() {
		if recover() == nil {
			t.Error("second HandleOp of one operation did not panic")
		}
	}()
	queue.HandleOp(mux, queue.OpRead, h)
}

func TestDecodeDone(t *testing.T) {
	t.Parallel()
	entries := []manifest.Entry{
		{Path: ".", Type: manifest.TypeDir, Mode: 0o755},
		{Path: "a.txt", Type: manifest.TypeFile, Mode: 0o644, Size: 12, MTime: 1700000000123456789, Inode: 77},
	}
	tests := []struct {
		kind string
		v    any
		want any // what decoding gives, if not v
	}{
		{queue.DoneChunk, &queue.ChunkDone{V: queue.WorkVersion, JobID: "j", Index: 1, Length: 5}, nil},
		{queue.DoneScanPart, queue.NewScanBatch("j", 1, 2, entries), nil},
		{queue.DoneScan, &queue.ScanDone{V: queue.WorkVersion, JobID: "j", Batches: 3}, nil},
		{queue.DoneProblems, &queue.FileProblems{V: queue.WorkVersion, JobID: "j", Index: 4}, nil},
		{queue.DoneStep, &queue.StepDone{V: queue.WorkVersion, JobID: "j", Op: queue.OpFinish}, nil},
		{queue.DoneFailed, &queue.WorkFailed{V: queue.WorkVersion, JobID: "j", Code: queue.CodeMissing, Message: "gone"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			want := tt.want
			if want == nil {
				want = tt.v
			}
			got, err := queue.DecodeDone(queue.DoneSubject("j", tt.kind), queue.Encode(tt.v))
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeDone = %+v, %v; want %+v", got, err, want)
			}
		})
	}
	t.Run("unknown kind", func(t *testing.T) {
		t.Parallel()
		if _, err := queue.DecodeDone("bulk.done.j.bogus", []byte(`{"v":3}`)); !errors.Is(err, queue.ErrBadMessage) {
			t.Errorf("DecodeDone of an unknown kind = %v, want %v", err, queue.ErrBadMessage)
		}
	})
	t.Run("scan batch unpacks", func(t *testing.T) {
		t.Parallel()
		v, err := queue.DecodeDone(queue.DoneSubject("j", queue.DoneScanPart), queue.Encode(queue.NewScanBatch("j", 1, 2, entries)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.(*queue.ScanBatch).Unpack()
		if err != nil || !reflect.DeepEqual(got, entries) {
			t.Errorf("Unpack = %+v, %v; want %+v", got, err, entries)
		}
	})
	t.Run("bad scan batches", func(t *testing.T) {
		t.Parallel()
		zeros := make([]byte, queue.MaxScanBatch+1)
		enc, _ := zstd.NewWriter(nil)
		// Refused when decoded: counts and sizes out of bounds.
		refused := map[string]*queue.ScanBatch{
			"no entries":     {V: queue.WorkVersion, JobID: "j", Count: 0, Packed: packed(entries)},
			"too many":       {V: queue.WorkVersion, JobID: "j", Count: 1 << 20, Packed: packed(entries)},
			"nothing packed": {V: queue.WorkVersion, JobID: "j", Count: 2},
			"negative count": {V: queue.WorkVersion, JobID: "j", Count: -1, Packed: packed(entries)},
		}
		for name, b := range refused {
			if _, err := queue.DecodeDone(queue.DoneSubject("j", queue.DoneScanPart), queue.Encode(b)); !errors.Is(err, queue.ErrBadMessage) {
				t.Errorf("%s: DecodeDone = %v, want %v", name, err, queue.ErrBadMessage)
			}
		}
		// Refused when unpacked: the packed bytes themselves.
		bad := map[string][]byte{
			"not packed":          []byte(`[{"path":"."}]`),
			"unknown entry field": enc.EncodeAll([]byte(`[{"path":".","bogus":1}]`), nil),
			"not a list":          enc.EncodeAll([]byte(`{"path":"."}`), nil),
			"unpacks too large":   enc.EncodeAll(zeros, nil),
			"truncated":           packed(entries)[:10],
			"another count":       packed(entries[:1]),
		}
		for name, p := range bad {
			b := &queue.ScanBatch{V: queue.WorkVersion, JobID: "j", Count: len(entries), Packed: p}
			if _, err := b.Unpack(); !errors.Is(err, queue.ErrBadMessage) {
				t.Errorf("%s: Unpack = %v, want %v", name, err, queue.ErrBadMessage)
			}
		}
	})
	t.Run("body of another kind", func(t *testing.T) {
		t.Parallel()
		body := queue.Encode(&queue.StepDone{V: queue.WorkVersion, JobID: "j", Op: queue.OpFinish})
		if _, err := queue.DecodeDone(queue.DoneSubject("j", queue.DoneChunk), body); !errors.Is(err, queue.ErrBadMessage) {
			t.Errorf("DecodeDone of a step as a chunk = %v, want %v", err, queue.ErrBadMessage)
		}
	})
}

// packed is the packed form of entries, as a scan batch carries it.
func packed(entries []manifest.Entry) []byte { return queue.NewScanBatch("j", 1, 0, entries).Packed }
