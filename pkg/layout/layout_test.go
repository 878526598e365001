package layout_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/layout"
)

func TestVolume(t *testing.T) {
	t.Parallel()
	const cs = 8192
	tests := []struct {
		name string
		size int64
		want []layout.Range
	}{
		{"empty", 0, nil},
		{"one byte", 1, []layout.Range{{0, 0, 1}}},
		{"one block short", cs - 1, []layout.Range{{0, 0, cs - 1}}},
		{"exact one", cs, []layout.Range{{0, 0, cs}}},
		{"exact multiple", 3 * cs, []layout.Range{{0, 0, cs}, {1, cs, cs}, {2, 2 * cs, cs}}},
		{"tail", 2*cs + 5, []layout.Range{{0, 0, cs}, {1, cs, cs}, {2, 2 * cs, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Collect(layout.Volume(tt.size, cs))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Volume(%d) = %v, want %v", tt.size, got, tt.want)
			}
			if n := layout.Count(tt.size, cs); n != len(tt.want) {
				t.Fatalf("Count(%d) = %d, want %d", tt.size, n, len(tt.want))
			}
			var covered int64
			for _, r := range got {
				if r != layout.At(r.Index, tt.size, cs) {
					t.Fatalf("At(%d) = %v, want %v", r.Index, layout.At(r.Index, tt.size, cs), r)
				}
				covered += r.Length
			}
			if covered != tt.size {
				t.Fatalf("chunks cover %d bytes, want %d", covered, tt.size)
			}
		})
	}
}

func TestVolumeStopsEarly(t *testing.T) {
	t.Parallel()
	n := 0
	for range layout.Volume(1<<40, layout.DefaultChunkSize) {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("iterated %d times, want 3", n)
	}
}

func TestCheckChunkSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size    int64
		wantErr bool
	}{
		{4096, false},
		{layout.DefaultChunkSize, false},
		{24 << 20, false},
		{layout.MaxChunkSize, false},
		{0, true},
		{-4096, true},
		{4095, true},
		{4097, true},
		{layout.MaxChunkSize + 4096, true},
	}
	for _, tt := range tests {
		if err := layout.CheckChunkSize(tt.size); (err != nil) != tt.wantErr {
			t.Errorf("CheckChunkSize(%d) = %v, wantErr %v", tt.size, err, tt.wantErr)
		}
	}
}

func ExampleVolume() {
	for r := range layout.Volume(10000, 4096) {
		fmt.Println(r.Index, r.Offset, r.Length)
	}
	// Output:
	// 0 0 4096
	// 1 4096 4096
	// 2 8192 1808
}
