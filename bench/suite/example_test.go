package suite_test

import (
	"fmt"
	"time"

	"github.com/wsd-server/wsd/bench/suite"
)

func ExampleStandard() {
	for _, s := range suite.Standard(3 * time.Second) {
		fmt.Println(s.CommandLine("127.0.0.1:8080"))
	}
	// Output:
	// wsd-bench idle --url ws://127.0.0.1:8080/ --steps 5000,10000 --pid PID
	// wsd-bench echo --url ws://127.0.0.1:8080/ --conns 100 --size 64 --duration 3s
	// wsd-bench echo --url ws://127.0.0.1:8080/ --conns 1000 --size 64 --duration 3s
	// wsd-bench echo --url ws://127.0.0.1:8080/ --conns 10 --size 65536 --duration 3s
	// wsd-bench broadcast --url ws://127.0.0.1:8080/broadcast --receivers 1000 --size 64 --window 32 --duration 3s
	// wsd-bench broadcast --url ws://127.0.0.1:8080/broadcast --receivers 10000 --size 64 --window 4 --duration 3s
	// wsd-bench broadcast --url ws://127.0.0.1:8080/broadcast --receivers 1000 --size 4096 --window 32 --duration 3s
	// wsd-bench broadcast --url ws://127.0.0.1:8080/broadcast --receivers 100 --size 4096 --window 32 --duration 3s
	// wsd-bench broadcast --url ws://127.0.0.1:8080/broadcast --receivers 100 --stuck 1 --size 4096 --window 32 --duration 3s
	// wsd-bench http --url http://127.0.0.1:8080/ --conns 100 --duration 3s
	// wrk -t1 -c100 -d3s http://127.0.0.1:8080/
}
