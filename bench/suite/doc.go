// Package suite runs the standard benchmark set: it starts the server under
// test and the baseline server one after the other on free 127.0.0.1 ports,
// runs every scenario against each several times, and turns the medians
// into a table of ratios held against the project's targets.
package suite
