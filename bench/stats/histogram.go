package stats

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the precision: every power-of-two range is split into
// 1<<subBits equal buckets, so a recorded value is off by less than
// 1/(1<<subBits) (0.8 %) of itself.
const (
	subBits    = 7
	subCount   = 1 << subBits
	numBuckets = (64 - subBits + 1) * subCount
)

// Histogram counts durations in log-linear buckets, like an HDR histogram
// with two significant digits. Its memory is fixed (about 60 KiB) whatever
// the number of samples, and Record may be called from many goroutines at
// once. The zero value is ready to use.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Uint64 // stored as ^v so that the zero value means "none"
	max    atomic.Uint64
}

// bucketOf maps a value to its bucket. Values below subCount have a bucket
// each; above, a value v with bit length n falls in power range n-subBits.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	shift := i/subCount - 1
	lo = uint64(subCount+i%subCount) << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one sample. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	h.observe(v, v)
}

// observe widens the recorded range to include lo and hi.
func (h *Histogram) observe(lo, hi uint64) {
	for {
		old := h.max.Load()
		if hi <= old || h.max.CompareAndSwap(old, hi) {
			break
		}
	}
	for {
		old := h.min.Load()
		if (old != 0 && lo >= ^old) || h.min.CompareAndSwap(old, ^lo) {
			break
		}
	}
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.Count() == 0 {
		return
	}
	for i := range o.counts {
		if n := o.counts[i].Load(); n != 0 {
			h.counts[i].Add(n)
		}
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
	h.observe(uint64(o.Min()), uint64(o.Max()))
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Min returns the smallest sample, or 0 without samples.
func (h *Histogram) Min() time.Duration {
	m := h.min.Load()
	if m == 0 {
		return 0
	}
	return time.Duration(^m)
}

// Max returns the largest sample, or 0 without samples.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the average sample, or 0 without samples.
func (h *Histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the sample at quantile q (0 ≤ q ≤ 1) by nearest rank,
// within the histogram's precision, and exact for the minimum and maximum.
// It returns 0 without samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := time.Duration(lo + (hi-lo)/2)
			return min(max(v, h.Min()), h.Max())
		}
	}
	return h.Max()
}
