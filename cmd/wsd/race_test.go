//go:build race

package main

// raceEnabled makes TestMain build the binary with -race too, which reuses
// the packages already compiled for this test.
const raceEnabled = true
