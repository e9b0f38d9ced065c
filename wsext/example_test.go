package wsext_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/wsext"
)

// The spec's Quick Example in Go: GET / answers Hello World!, an upgrade
// at / echoes. A client then says hello over a real socket.
func Example() {
	handler := func(ctx *fasthttp.RequestCtx) {
		if ctx.IsGet() && ctx.Request.Header.ConnectionUpgrade() {
			// Upgrade to the WebSocket protocol, if requested: echo.
			wsext.Upgrade(ctx, wsext.Settings{
				OnMessage: func(ws *wsext.Conn, data []byte, isText bool) {
					ws.Write(data, isText)
				},
			})
			return
		}
		ctx.WriteString("Hello World!")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the spec's default port is 3000
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln)
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte("hello"))
	_, reply, _ := c.Read(ctx)
	fmt.Println(string(reply))
	// Output: hello
}

// A chat room: every message goes to every other connection with Each,
// and user data tells the connections apart.
func ExampleServer_Each() {
	srv := wsext.NewServer(wsext.Options{})
	handler := func(ctx *fasthttp.RequestCtx) {
		srv.Upgrade(ctx, wsext.Settings{
			UData: string(ctx.QueryArgs().Peek("name")),
			OnMessage: func(ws *wsext.Conn, data []byte, isText bool) {
				line := fmt.Sprintf("%s: %s", ws.UData(), data) // data is only valid now: copy it
				srv.Each(ws, func(to *wsext.Conn, arg any) {
					to.Write([]byte(arg.(string)), true)
				}, line, nil)
			},
		})
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go fasthttp.Serve(ln, handler)
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	base := "ws://" + ln.Addr().String() + "/?name="
	ann, _, _ := websocket.Dial(ctx, base+"ann", nil)
	bob, _, _ := websocket.Dial(ctx, base+"bob", nil)
	defer ann.CloseNow()
	defer bob.CloseNow()
	for srv.Count() < 2 { // both open: Count is this process's connections
		time.Sleep(time.Millisecond)
	}
	ann.Write(ctx, websocket.MessageText, []byte("hi bob"))
	_, msg, _ := bob.Read(ctx)
	fmt.Println(string(msg))
	// Output: ann: hi bob
}

// Settings are global to a Server and change at any time: the size limit
// applies from the next message, the timeout to connections opened after.
func ExampleServer_SetMaxMsgSize() {
	srv := wsext.NewServer(wsext.Options{})
	srv.SetMaxMsgSize(2 << 20) // ~2 MB, as in the spec
	srv.SetTimeout(45 * time.Second)
	fmt.Println(srv.MaxMsgSize(), srv.Timeout())
	// Output: 2097152 45s
}

// User data can be set at the upgrade and swapped later; SetUData returns
// the previous value.
func ExampleConn_SetUData() {
	handler := func(ctx *fasthttp.RequestCtx) {
		wsext.Upgrade(ctx, wsext.Settings{
			UData: 1,
			OnMessage: func(ws *wsext.Conn, data []byte, isText bool) {
				old := ws.SetUData(ws.UData().(int) + 1)
				ws.Write(fmt.Appendf(nil, "message %d", old), true)
			},
		})
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go fasthttp.Serve(ln, handler)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _ := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/", nil)
	defer c.CloseNow()
	for range 2 {
		c.Write(ctx, websocket.MessageText, []byte("x"))
		_, reply, _ := c.Read(ctx)
		fmt.Println(string(reply))
	}
	// Output:
	// message 1
	// message 2
}

// A subscriber that comes back with the last position it saw gets what it
// missed, then the live messages: here a SubscribeFuncWith subscriber, as
// wsd's Server-Sent Events streams are.
func ExampleServer_SubscribeFuncWith() {
	srv := wsext.NewServer(wsext.Options{HistorySize: 100})
	var last wsext.Position
	for _, m := range []string{"one", "two", "three"} {
		last, _ = srv.PublishPosition("news", []byte(m), true)
	}
	seen := wsext.Position{Offset: 1, Epoch: last.Epoch} // the subscriber saw "one"
	sub, rec, err := srv.SubscribeFuncWith("news", func(pos wsext.Position, data []byte, isText bool) {
		fmt.Println(pos.Offset, string(data))
	}, wsext.SubscribeOptions{Since: &seen})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Unsubscribe()
	fmt.Println("recovered:", rec.Recovered, "replayed:", rec.Replayed)
	srv.Publish("news", []byte("four"), true)
	// Output:
	// 2 two
	// 3 three
	// recovered: true replayed: 2
	// 4 four
}

// Presence lists the subscriptions that asked to be listed, in every
// process of an engine that keeps presence, with join and leave events for
// those that want them.
func ExampleServer_Presence() {
	srv := wsext.NewServer(wsext.Options{PresenceEvents: true})
	watch, _, _ := srv.SubscribeFuncWith("room", func(wsext.Position, []byte, bool) {}, wsext.SubscribeOptions{
		OnPresence: func(ev wsext.PresenceEvent) { fmt.Println(ev.Presence, ev.User) },
	})
	defer watch.Unsubscribe()
	alice, _, _ := srv.SubscribeFuncWith("room", func(wsext.Position, []byte, bool) {}, wsext.SubscribeOptions{
		Presence: &wsext.Member{Client: "c1", User: "alice"},
	})
	members, _ := srv.Presence("room")
	fmt.Println(members)
	alice.Unsubscribe()
	members, _ = srv.Presence("room")
	fmt.Println(len(members))
	// Output:
	// join alice
	// [{c1 alice}]
	// leave alice
	// 0
}
