package report_test

import (
	"fmt"

	"github.com/wsd-server/wsd/bench/report"
)

func ExampleSplice() {
	doc := "# Benchmarks\n\nWritten by hand.\n\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\n\nMore hand text.\n"
	out, _ := report.Splice([]byte(doc), []byte("new table\n"))
	fmt.Print(string(out))
	// Output:
	// # Benchmarks
	//
	// Written by hand.
	//
	// <!-- bench:begin -->
	// new table
	// <!-- bench:end -->
	//
	// More hand text.
}
