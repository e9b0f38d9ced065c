package cluster_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
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

// A Hub that listens on nothing serves connections handed to it, such as
// one end of a socketpair per worker, as wsd's master does; the worker's
// Engine asks for a new one whenever it (re)connects.
func ExampleHub_Attach() {
	hub := cluster.NewHub(cluster.Options{})
	defer hub.Close()

	// connect makes a socketpair, attaches one end to the hub and returns
	// the other. In wsd the master sends that end to the worker process.
	connect := func(context.Context) (net.Conn, error) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		var ends [2]net.Conn
		for i, fd := range fds {
			f := os.NewFile(uintptr(fd), "relay")
			ends[i], err = net.FileConn(f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		if err := hub.Attach(ends[0]); err != nil {
			ends[1].Close()
			return nil, err
		}
		return ends[1], nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := cluster.NewEngine(ctx, connect, cluster.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	b, _ := cluster.NewEngine(ctx, connect, cluster.Options{})
	defer b.Close()

	got := make(chan string, 1)
	b.Start(func(channel string, data []byte, isText bool) {
		select {
		case got <- channel + ": " + string(data):
		default: // a retry's copy
		}
	})
	b.Subscribe("news")
	for {
		a.Publish("news", []byte("over a socketpair"), true)
		select {
		case m := <-got:
			fmt.Println(m)
			return
		case <-time.After(10 * time.Millisecond): // the subscription was not in yet
		}
	}
	// Output: news: over a socketpair
}
