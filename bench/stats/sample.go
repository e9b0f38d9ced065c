package stats

import (
	"math"
	"slices"
)

// Median returns the middle of xs (the mean of the two middle values when
// len(xs) is even), or NaN for an empty slice. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Percentile returns the nearest-rank p-th percentile (0 ≤ p ≤ 100) of xs,
// or NaN for an empty slice. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(min(max(p, 0), 100) / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}
