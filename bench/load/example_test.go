package load_test

import (
	"context"
	"fmt"
	"time"

	"github.com/wsd-server/wsd/bench/load"
)

// Echo 64-byte messages over 100 connections for five seconds against a
// server on port 8080.
func ExampleEcho() {
	res, err := load.Echo(context.Background(), load.EchoOptions{
		URL:      "ws://127.0.0.1:8080/",
		Conns:    100,
		Size:     64,
		Duration: 5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.0f msg/s, p99 %v\n", res.MsgPerSec(), res.Latency.Quantile(0.99))
}

// Broadcast to 1 000 receivers, checking that each gets every message in
// order, with one extra receiver that never reads.
func ExampleBroadcast() {
	res, err := load.Broadcast(context.Background(), load.BroadcastOptions{
		URL:       "ws://127.0.0.1:8080/broadcast",
		Receivers: 1000,
		Stuck:     1,
		Size:      64,
		Duration:  5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.0f deliveries/s, complete: %v\n", res.DeliveriesPerSec(), res.Complete)
}

func ExampleWebSocketURL() {
	u, _ := load.WebSocketURL("http://127.0.0.1:8080", "/broadcast")
	fmt.Println(u)
	// Output: ws://127.0.0.1:8080/broadcast
}
