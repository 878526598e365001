package volgen

import (
	"math"
	"testing"
)

func TestLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mix  Mix
		size int64
	}{
		{name: "default", mix: Mix{}, size: 1 << 30},
		{name: "text and zeros", mix: Mix{Text: 3, Zeros: 1}, size: 1 << 30},
		{name: "tiny share", mix: Mix{Text: 1, Random: 0.001}, size: 4 << 30},
		{name: "only zeros", mix: Mix{Zeros: 1}, size: 256 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			weights, err := tt.mix.weights()
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			for _, w := range weights {
				sum += float64(w)
			}
			l := newLayout(42, weights)
			var have [numKinds]int64
			for l.pos < tt.size {
				r := l.next()
				if r.off%align != 0 || r.length%align != 0 {
					t.Fatalf("region %+v not %d-aligned", r, align)
				}
				if r.length < minRegion || r.length > maxRegion {
					t.Fatalf("region %+v length outside [%d, %d]", r, minRegion, maxRegion)
				}
				if weights[r.kind] == 0 {
					t.Fatalf("region %+v of a kind with weight 0", r)
				}
				have[r.kind] += r.length
			}
			for k, w := range weights {
				got, want := float64(have[k])/float64(l.pos), float64(w)/sum
				if math.Abs(got-want) > 0.02 {
					t.Errorf("kind %d has %.3f of the bytes, want %.3f", k, got, want)
				}
			}
		})
	}
}

// TestZeroExtents checks that the default mix puts a 4 MiB-aligned all-zero
// 4 MiB block into a 64 MiB image for many seeds, not just the one the
// black-box test generates.
func TestZeroExtents(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	weights, err := Mix{}.weights()
	if err != nil {
		t.Fatal(err)
	}
	for seed := range int64(1000) {
		l := newLayout(seed, weights)
		found := false
		for l.pos < size && !found {
			r := l.next()
			first := (r.off + extentAlign - 1) / extentAlign * extentAlign
			found = r.kind == kindZeros && first+extentAlign <= min(r.off+r.length, size)
		}
		if !found {
			t.Errorf("seed %d: no aligned zero block in %d bytes", seed, size)
		}
	}
}

func TestMixWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mix     Mix
		want    [numKinds]int64
		wantErr bool
	}{
		{name: "zero is default", mix: Mix{}, want: [numKinds]int64{1433, 1024, 1024, 614}},
		{name: "normalised", mix: Mix{Text: 2, Binary: 2}, want: [numKinds]int64{2048, 2048, 0, 0}},
		{name: "tiny weight kept", mix: Mix{Text: 1, Random: 1e-9}, want: [numKinds]int64{4095, 0, 0, 1}},
		{name: "negative", mix: Mix{Text: -1, Binary: 2}, wantErr: true},
		{name: "infinite", mix: Mix{Text: math.Inf(1)}, wantErr: true},
		{name: "NaN", mix: Mix{Zeros: math.NaN()}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.mix.weights()
			if (err != nil) != tt.wantErr {
				t.Fatalf("weights() error %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("weights() = %v, want %v", got, tt.want)
			}
		})
	}
}
