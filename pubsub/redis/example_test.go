package redis_test

import (
	"log"

	"github.com/wsd-server/wsd/pubsub/redis"
	"github.com/wsd-server/wsd/wsext"
)

// Each process of each host makes its own Engine on the shared Redis and
// gives it to its wsext server; Subscribe and Publish then span the hosts.
func Example() {
	engine, err := redis.New(redis.Options{URL: "redis://127.0.0.1:6379/0"})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close() // after the server's Shutdown
	srv := wsext.NewServer(wsext.Options{Engine: engine})
	if err := srv.Publish("news", []byte("hello, hosts"), true); err != nil {
		log.Print(err) // Redis is down: only this process's subscribers got it
	}
}
