package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/wsext"
)

// A master runs the Hub; each worker dials it and hands the Engine to its
// wsext server. Here both sides run in one process.
func Example() {
	dir, _ := os.MkdirTemp("", "wsd-example")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "pubsub.sock")

	// In the master:
	hub, err := cluster.Listen(sock, cluster.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()

	// In each worker:
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	engine, err := cluster.Dial(ctx, sock, cluster.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer engine.Close()
	srv := wsext.NewServer(wsext.Options{Engine: engine})
	_ = srv // srv.Subscribe, srv.Publish and Conn.Publish now span the workers

	// What a second worker's engine sees of the first one's publish:
	other, _ := cluster.Dial(ctx, sock, cluster.Options{})
	defer other.Close()
	got := make(chan string, 1)
	other.Start(func(channel string, data []byte, isText bool) {
		select {
		case got <- channel + ": " + string(data):
		default: // a retry's copy
		}
	})
	other.Subscribe("news")
	for {
		srv.Publish("news", []byte("hello, workers"), true)
		select {
		case m := <-got:
			fmt.Println(m)
			return
		case <-time.After(10 * time.Millisecond): // the subscription was not in yet
		}
	}
	// Output: news: hello, workers
}
