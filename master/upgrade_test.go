package master

import (
	"strings"
	"testing"
)

func TestParseInheritState(t *testing.T) {
	tests := []struct {
		name, in string
		err      string // substring; "" means valid
	}{
		{"valid", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4},{"socket":5,"pid":0,"lifeline":0}],"draining":[11]}`, ""},
		{"ipv6", `{"network":"tcp","addr":"[::]:80","slots":[{"socket":3,"pid":10,"lifeline":4}]}`, ""},
		{"not json", `{`, "unexpected EOF"},
		{"trailing", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":0,"lifeline":0}]} {}`, "trailing"},
		{"unknown field", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[],"x":1}`, "unknown field"},
		{"network", `{"network":"udp","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":0,"lifeline":0}]}`, "network"},
		{"address", `{"network":"tcp4","addr":"nowhere","slots":[{"socket":3,"pid":0,"lifeline":0}]}`, "address"},
		{"no slots", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[]}`, "no slots"},
		{"stdio socket", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":2,"pid":0,"lifeline":0}]}`, "socket descriptor 2"},
		{"shared fd", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":3}]}`, "lifeline descriptor 3"},
		{"same pid twice", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4},{"socket":5,"pid":10,"lifeline":6}]}`, "pid 10"},
		{"lifeline without worker", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":0,"lifeline":4}]}`, "lifeline without"},
		{"negative pid", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":-1,"lifeline":4}]}`, "pid -1"},
		{"draining twice", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4}],"draining":[10]}`, "draining pid 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseInheritState(tt.in)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

// FuzzParseInheritState: whatever the environment holds, parsing does not
// panic, and what it accepts is safe to act on: descriptors above stdio and
// used once, pids positive and used once.
func FuzzParseInheritState(f *testing.F) {
	f.Add(`{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4}],"draining":[11]}`)
	f.Add(`{"network":"tcp","addr":"[::]:0","slots":[{"socket":3,"pid":0,"lifeline":0}]}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseInheritState(s)
		if err != nil {
			return
		}
		fds := map[int]bool{}
		pids := map[int]bool{}
		use := func(m map[int]bool, v, min int) {
			if v < min || m[v] {
				t.Fatalf("accepted %q: %d reused or below %d", s, v, min)
			}
			m[v] = true
		}
		for _, sl := range st.Slots {
			use(fds, sl.Socket, 3)
			if sl.PID != 0 {
				use(pids, sl.PID, 1)
				use(fds, sl.Lifeline, 3)
			}
		}
		for _, pid := range st.Draining {
			use(pids, pid, 1)
		}
	})
}
