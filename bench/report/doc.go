// Package report renders benchmark results: a plain-text table for the
// terminal and a markdown section (machine, commands, table of medians,
// every run, and the 1 000 000-connection estimate) that it writes between
// two marker comments of a file such as BENCHMARKS.md, leaving the
// hand-written text around them untouched.
package report
