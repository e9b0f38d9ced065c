// Package progress shows a running benchmark's elapsed time and current
// rate: one line rewritten in place on a terminal, or a plain line every few
// seconds when the output is a file or a pipe.
package progress
