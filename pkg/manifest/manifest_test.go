package manifest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

func sample() *manifest.Snapshot {
	h := chunk.Sum([]byte("a")).String()
	return &manifest.Snapshot{
		Version: manifest.Version, ID: "0123abcd", Time: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC),
		Host: "db1", Path: "/dev/sdb", Mode: manifest.ModeVolume, SourceKind: manifest.KindDevice,
		Size: 10000, ChunkSize: 4096, Hash: "sha256", Compression: "zstd", Level: "fastest",
		Chunks: []manifest.Chunk{
			{Offset: 0, Length: 4096, Hash: h, StoredSize: 100},
			{Offset: 4096, Length: 4096, Zero: true},
			{Offset: 8192, Length: 1808, Hash: h, StoredSize: 90},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := sample()
	data, err := manifest.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(s *manifest.Snapshot)
	}{
		{"future version", func(s *manifest.Snapshot) { s.Version = 99 }},
		{"no id", func(s *manifest.Snapshot) { s.ID = "" }},
		{"unknown mode", func(s *manifest.Snapshot) { s.Mode = "tape" }},
		{"unknown hash", func(s *manifest.Snapshot) { s.Hash = "md5" }},
		{"odd chunk size", func(s *manifest.Snapshot) { s.ChunkSize = 1000 }},
		{"missing chunk", func(s *manifest.Snapshot) { s.Chunks = s.Chunks[:2] }},
		{"gap", func(s *manifest.Snapshot) { s.Chunks[1].Offset = 5000 }},
		{"wrong tail length", func(s *manifest.Snapshot) { s.Chunks[2].Length = 4096 }},
		{"bad hash", func(s *manifest.Snapshot) { s.Chunks[0].Hash = "../../etc/passwd" }},
		{"zero with hash", func(s *manifest.Snapshot) { s.Chunks[1].Hash = s.Chunks[0].Hash }},
		{"no stored size", func(s *manifest.Snapshot) { s.Chunks[0].StoredSize = 0 }},
		{"negative size", func(s *manifest.Snapshot) { s.Size = -1 }},
		{"size whose chunk count overflows", func(s *manifest.Snapshot) { s.Size = math.MaxInt64 }},
		{"size just below the count's overflow", func(s *manifest.Snapshot) { s.Size = math.MaxInt64 - 4095 }},
		{"file mode beyond permission bits", func(s *manifest.Snapshot) { m := uint32(0o10644); s.FileMode = &m }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := sample()
			tt.mutate(s)
			if _, err := manifest.Encode(s); !errors.Is(err, manifest.ErrInvalid) {
				t.Fatalf("Encode = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestFileMode: a volume's file mode is kept, mode 0 included, and a
// manifest without one (older) still reads, as no mode.
func TestFileMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []uint32{0o644, 0, 0o4755} {
		s := sample()
		s.SourceKind, s.FileMode = manifest.KindFile, &mode
		data, err := manifest.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`"file_mode":%d`, mode); !strings.Contains(string(data), want) {
			t.Errorf("manifest does not hold %s:\n%s", want, data)
		}
		got, err := manifest.Decode(data)
		if err != nil || got.FileMode == nil || *got.FileMode != mode {
			t.Errorf("file mode %o read back as %v (%v)", mode, got.FileMode, err)
		}
	}
	old, err := manifest.Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(old), "file_mode") {
		t.Errorf("a manifest without a file mode names one:\n%s", old)
	}
	if got, err := manifest.Decode(old); err != nil || got.FileMode != nil {
		t.Errorf("an older manifest: %v, file mode %v; want it read, without a mode", err, got.FileMode)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "{", "[]", `{"version":1}`, `{"version":"x"}`} {
		if _, err := manifest.Decode([]byte(in)); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("Decode(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestEmptyVolume(t *testing.T) {
	t.Parallel()
	s := sample()
	s.Size, s.Chunks = 0, nil
	if _, err := manifest.Encode(s); err != nil {
		t.Fatalf("empty volume: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	data, _ := manifest.Encode(sample())
	f.Add(data)
	files, _ := manifest.Encode(filesSample())
	f.Add(files)
	f.Add([]byte(`{"version":1,"id":"x","mode":"volume","hash":"sha256","size":0,"chunk_size":4096,"chunks":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := manifest.Decode(data)
		// The streaming decoder accepts exactly what Decode accepts, as the
		// same manifest; so does the header decoder, for what it reads.
		sr, errR := manifest.DecodeReader(bytes.NewReader(data))
		if (err == nil) != (errR == nil) {
			t.Fatalf("Decode = %v, DecodeReader = %v", err, errR)
		}
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Decode accepted a manifest that does not validate: %v", err)
		}
		a, _ := json.Marshal(s)
		b, _ := json.Marshal(sr)
		if !bytes.Equal(a, b) {
			t.Fatalf("DecodeReader decoded\n%s\nDecode\n%s", b, a)
		}
		if h, err := manifest.DecodeHeaderReader(bytes.NewReader(data)); err != nil || h.ID != s.ID || h.Chunks != nil || h.Files != nil {
			t.Fatalf("DecodeHeaderReader = %+v, %v", h, err)
		}
	})
}

func TestDecodeReaderRejects(t *testing.T) {
	t.Parallel()
	good, err := manifest.Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"trailing data":   string(good) + "{}",
		"an array":        "[]",
		"chunks object":   `{"version":1,"id":"x","mode":"volume","hash":"sha256","size":0,"chunk_size":4096,"chunks":{}}`,
		"cut short":       string(good[:len(good)-3]),
		"not JSON":        "manifest",
		"invalid content": strings.Replace(string(good), `"sha256"`, `"md5"`, 1),
	} {
		if _, err := manifest.DecodeReader(strings.NewReader(data)); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("%s: DecodeReader = %v, want ErrInvalid", name, err)
		}
	}
}

func ExampleDecode() {
	s, err := manifest.Decode([]byte(`{"version":1,"id":"x","mode":"volume","hash":"sha256","size":0,"chunk_size":4096,"chunks":[]}`))
	fmt.Println(s.ID, len(s.Chunks), err)
	// Output: x 0 <nil>
}

func TestDecodeHeader(t *testing.T) {
	t.Parallel()
	s := sample()
	data, err := manifest.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	h, err := manifest.DecodeHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != s.ID || h.Host != s.Host || h.Size != s.Size || !h.Time.Equal(s.Time) || h.Chunks != nil || h.Files != nil {
		t.Errorf("header %+v: want the sample's ID, host, size and time, without chunks or files", h)
	}
	for _, bad := range []string{`{"version":9,"id":"x"}`, `{"version":1}`, `{"version":1,"id":"x","chunks":{`, `[]`} {
		if _, err := manifest.DecodeHeader([]byte(bad)); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("DecodeHeader(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestVersionFor(t *testing.T) {
	t.Parallel()
	// Volumes stay at version 1 so that readers of version 1 restore them.
	if v := manifest.VersionFor(manifest.ModeVolume); v != 1 {
		t.Errorf("volume snapshots are written as version %d, want 1", v)
	}
	if v := manifest.VersionFor(manifest.ModeFiles); v != 2 || v > manifest.Version {
		t.Errorf("files snapshots are written as version %d, want 2 (newest %d)", v, manifest.Version)
	}
}

func TestCheckVolume(t *testing.T) {
	t.Parallel()
	const tib = 1 << 40
	tests := []struct {
		size, chunkSize int64
		ok              bool
	}{
		{0, 4096, true},
		{4 * tib, 4 << 20, true},
		{64 * tib, 4 << 20, false},
		{64 * tib, 64 << 20, true},
		{math.MaxInt64, 256 << 20, false},
	}
	for _, tt := range tests {
		err := manifest.CheckVolume(tt.size, tt.chunkSize)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, manifest.ErrTooLarge) {
			t.Errorf("CheckVolume(%d, %d) = %v, want ok %v", tt.size, tt.chunkSize, err, tt.ok)
		}
		if err != nil && tt.size < 1<<60 && !strings.Contains(err.Error(), "use a chunk size of at least") {
			t.Errorf("CheckVolume(%d, %d) = %q, want advice", tt.size, tt.chunkSize, err)
		}
	}
}

// TestDecodeChunksReader: what a prune or a check reads of a manifest,
// for both repository kinds' chunk names, and what it refuses.
func TestDecodeChunksReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(s *manifest.Snapshot)
		want   string // "" for success
	}{
		{"plaintext", func(s *manifest.Snapshot) {}, ""},
		{"encrypted", func(s *manifest.Snapshot) { s.Hash = "hmac-sha256" }, ""},
		{"unknown hash", func(s *manifest.Snapshot) { s.Hash = "md5" }, `unknown hash "md5"`},
		{"bad chunk name", func(s *manifest.Snapshot) { s.Chunks[2].Hash = "../../config" }, "chunk 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := sample()
			tt.change(s)
			data, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := manifest.DecodeChunksReader(bytes.NewReader(data))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("DecodeChunksReader: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("DecodeChunksReader = %v, want an error naming %q", err, tt.want)
			case tt.want == "" && (len(got.Chunks) != len(s.Chunks) || got.Chunks[2].Hash != s.Chunks[2].Hash):
				t.Errorf("DecodeChunksReader read chunks %+v, want %+v", got.Chunks, s.Chunks)
			}
		})
	}
}
