package stats

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
		{[]float64{-1, 10, 0}, 0},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("Median modified its input: %v, was %v", tt.in, in)
		}
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{15, 20, 35, 40, 50}
	tests := []struct {
		p    float64
		want float64
	}{
		{0, 15}, {5, 15}, {30, 20}, {40, 20}, {50, 35}, {100, 50}, {150, 50}, {-3, 15},
	}
	for _, tt := range tests {
		if got := Percentile(xs, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %v, want NaN", got)
	}
}

func TestBucketsRoundTrip(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 123456789, 1<<63 + 12345, math.MaxUint64}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if width := hi - lo; v >= subCount && float64(width) > float64(v)/subCount {
			t.Errorf("bucket of %d is %d wide, more than 1/%d of it", v, width, subCount)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) time.Duration
	}{
		{"uniform-micro", func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(1000)) * time.Microsecond }},
		{"exponential", func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * float64(time.Millisecond)) }},
		{"tiny", func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(100)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h Histogram
			exact := make([]float64, 20000)
			for i := range exact {
				d := tt.gen(r)
				exact[i] = float64(d)
				h.Record(d)
			}
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				want := Percentile(exact, q*100)
				got := float64(h.Quantile(q))
				if math.Abs(got-want) > want/subCount+1 {
					t.Errorf("Quantile(%v) = %v, exact %v", q, got, want)
				}
			}
			if h.Count() != uint64(len(exact)) {
				t.Errorf("Count = %d, want %d", h.Count(), len(exact))
			}
			if got, want := float64(h.Min()), slices.Min(exact); got != want {
				t.Errorf("Min = %v, want %v", got, want)
			}
			if got, want := float64(h.Max()), slices.Max(exact); got != want {
				t.Errorf("Max = %v, want %v", got, want)
			}
		})
	}
}

func TestHistogramEmptyAndMerge(t *testing.T) {
	var a, b Histogram
	if a.Quantile(0.5) != 0 || a.Mean() != 0 || a.Min() != 0 || a.Max() != 0 {
		t.Fatal("empty histogram reports non-zero values")
	}
	a.Record(2 * time.Millisecond)
	b.Record(time.Millisecond)
	b.Record(5 * time.Millisecond)
	a.Merge(&b)
	a.Merge(new(Histogram))
	if a.Count() != 3 {
		t.Fatalf("Count = %d, want 3", a.Count())
	}
	if a.Min() != time.Millisecond || a.Max() != 5*time.Millisecond {
		t.Errorf("Min, Max = %v, %v; want 1ms, 5ms", a.Min(), a.Max())
	}
	if a.Mean() != 8*time.Millisecond/3 {
		t.Errorf("Mean = %v", a.Mean())
	}
	if got := a.Quantile(0.5); got < 1980*time.Microsecond || got > 2020*time.Microsecond {
		t.Errorf("median = %v, want about 2ms", got)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Record(time.Duration(g*1000 + i))
			}
		})
	}
	wg.Wait()
	if h.Count() != 8000 || h.Min() != 0 || h.Max() != 7999 {
		t.Fatalf("Count, Min, Max = %d, %v, %v", h.Count(), h.Min(), h.Max())
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i))
	}
}

func ExampleHistogram() {
	var h Histogram
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	fmt.Println(h.Count(), h.Min(), h.Max())
	fmt.Println(h.Quantile(0.99).Round(time.Millisecond))
	// Output:
	// 100 1ms 100ms
	// 99ms
}

func ExampleMedian() {
	fmt.Println(Median([]float64{68900, 70100, 69400}))
	// Output: 69400
}
