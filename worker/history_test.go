package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

type pubsubStatus struct {
	Status    string `json:"status"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered bool   `json:"recovered"`
	Replayed  int    `json:"replayed"`
}

type pubsubEnvelope struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Data   string `json:"data"`
}

// TestPubSubRecovery: a subscriber that comes back to /pubsub with the
// offset and epoch it last saw gets what was published meanwhile, then the
// live messages, each once; one that cannot be served is told so.
func TestPubSubRecovery(t *testing.T) {
	cfg := testConfig()
	cfg.Processes = 1
	cfg.HistorySize = 100
	addr := servedWorker(t, cfg, Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var published uint64
	publish := func(msg string) {
		resp, err := http.Post("http://"+addr+"/publish/room", "text/plain", strings.NewReader(msg))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /publish: %v %v", resp, err)
		}
		defer resp.Body.Close()
		// With history the answer is the message's position.
		var pos struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&pos); err != nil || pos.Offset != published+1 || pos.Epoch == "" {
			t.Fatalf("POST /publish answered %+v (%v), want offset %d", pos, err, published+1)
		}
		published = pos.Offset
	}
	dial := func(query string) *websocket.Conn {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/room"+query, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", query, err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	read := func(c *websocket.Conn, v any) {
		t.Helper()
		_, b, err := c.Read(ctx)
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("read %s: %v", b, err)
		}
	}

	first := dial("?format=json")
	var st pubsubStatus
	read(first, &st)
	for i := 1; i <= 3; i++ {
		publish(fmt.Sprint(i))
	}
	var e pubsubEnvelope
	for i := 1; i <= 3; i++ {
		read(first, &e)
	}
	seen := e // the client's last position: offset 3
	first.Close(websocket.StatusNormalClosure, "")
	for i := 4; i <= 6; i++ {
		publish(fmt.Sprint(i)) // missed while away
	}

	back := dial(fmt.Sprintf("?format=json&offset=%d&epoch=%s", seen.Offset, seen.Epoch))
	read(back, &st)
	if !st.Recovered || st.Replayed != 3 || st.Offset != 6 || st.Epoch != seen.Epoch {
		t.Fatalf("status %+v, want recovered with 3 replayed up to offset 6", st)
	}
	publish("7")
	for want := uint64(4); want <= 7; want++ {
		read(back, &e)
		if e.Offset != want || e.Data != fmt.Sprint(want) {
			t.Fatalf("got %+v, want offset %d once, in order", e, want)
		}
	}

	stale := dial("?format=json&offset=2&epoch=gone")
	read(stale, &st)
	if st.Recovered || st.Replayed != 0 || st.Offset != 7 {
		t.Fatalf("status for another epoch %+v, want not recovered at offset 7", st)
	}

	for _, bad := range []string{"?format=xml", "?offset=x&format=json", "?offset=3&epoch=e"} {
		resp, err := http.Get("http://" + addr + "/pubsub/room" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, resp.StatusCode)
		}
	}
}
