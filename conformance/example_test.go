package conformance_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/wsd-server/wsd/conformance"
)

// Run the whole suite, except the compression cases, against a server and
// print the per-case table and the summary line.
func ExampleRun() {
	target, err := conformance.ParseTarget("ws://127.0.0.1:3000/")
	if err != nil {
		fmt.Println(err)
		return
	}
	var cases []conformance.Case
	for _, c := range conformance.Cases() {
		if !c.Compression {
			cases = append(cases, c)
		}
	}
	report := conformance.Run(context.Background(), target, cases)
	report.WriteTo(os.Stdout)
	if report.Count(conformance.Failed) > 0 {
		os.Exit(1)
	}
}

func ExampleParseTarget() {
	t, err := conformance.ParseTarget("ws://localhost:8080/echo?room=1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.Addr, t.Path)
	// Output: localhost:8080 /echo?room=1
}

func ExampleReport_Summary() {
	var r conformance.Report
	c := conformance.Case{ID: "2.1", Category: "2 Pings/Pongs", Description: "ping"}
	r.Add(c, conformance.Result{Verdict: conformance.OK, Reason: "pong"})
	r.Add(c, conformance.Result{Verdict: conformance.NonStrict, Reason: "TCP dropped"})
	r.Add(c, conformance.Result{Verdict: conformance.Failed, Reason: "no pong"})
	fmt.Println(r.Summary())
	// Output: 2 passed, 1 failed
}

func ExampleCases() {
	categories := map[string]int{}
	var order []string
	for _, c := range conformance.Cases() {
		if categories[c.Category] == 0 {
			order = append(order, c.Category)
		}
		categories[c.Category]++
	}
	for _, cat := range order {
		fmt.Println(strings.Split(cat, " ")[0])
	}
	// Output:
	// 0
	// 1
	// 2
	// 3
	// 4
	// 5
	// 6
	// 7
	// 9
	// 12
	// 13
}
