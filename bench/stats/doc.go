// Package stats holds the small statistics the benchmarks report: a
// fixed-size, concurrency-safe latency histogram with bounded relative error
// and exact helpers for medians and percentiles of a handful of samples.
package stats
