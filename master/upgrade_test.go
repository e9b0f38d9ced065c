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
		// The channels travel in a variable of their own, which older
		// binaries, strict about this one, ignore.
		{"channels in the state", `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4,"status":5}]}`, "unknown field"},
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

func TestParseInheritChannels(t *testing.T) {
	const state = `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4},{"socket":5,"pid":11,"lifeline":6},{"socket":7,"pid":0,"lifeline":0}]}`
	digest := stateDigest(state)
	channels := func(workers string) string {
		return `{"state":"` + digest + `","workers":[` + workers + `]}`
	}
	tests := []struct {
		name, in string
		err      string // substring; "" means valid
		want     [][2]int
	}{
		{"both workers", channels(`{"pid":10,"status":8,"broker":9},{"pid":11,"status":12,"broker":13}`), "", [][2]int{{8, 9}, {12, 13}, {0, 0}}},
		{"one worker", channels(`{"pid":11,"status":8,"broker":9}`), "", [][2]int{{0, 0}, {8, 9}, {0, 0}}},
		{"broker only", channels(`{"pid":10,"status":0,"broker":9}`), "", [][2]int{{0, 9}, {0, 0}, {0, 0}}},
		{"unknown fields", `{"state":"` + digest + `","later":1,"workers":[{"pid":10,"status":8,"broker":9,"x":2}]}`, "", [][2]int{{8, 9}, {0, 0}, {0, 0}}},
		{"another state's", `{"state":"00","workers":[{"pid":10,"status":3,"broker":3}]}`, "", [][2]int{{0, 0}, {0, 0}, {0, 0}}},
		{"not json", `{`, "unexpected end", nil},
		{"unknown pid", channels(`{"pid":12,"status":8,"broker":9}`), "pid 12", nil},
		{"empty slot", channels(`{"pid":0,"status":8,"broker":9}`), "pid 0", nil},
		{"pid twice", channels(`{"pid":10,"status":8,"broker":9},{"pid":10,"status":12,"broker":13}`), "pid 10", nil},
		{"socket reused", channels(`{"pid":10,"status":3,"broker":9}`), "status descriptor 3", nil},
		{"lifeline reused", channels(`{"pid":10,"status":8,"broker":6}`), "broker descriptor 6", nil},
		{"stdio", channels(`{"pid":10,"status":2,"broker":9}`), "status descriptor 2", nil},
		{"shared", channels(`{"pid":10,"status":8,"broker":9},{"pid":11,"status":9,"broker":13}`), "status descriptor 9", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseInheritState(state)
			if err != nil {
				t.Fatal(err)
			}
			err = parseInheritChannels(tt.in, state, &st)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			for i, w := range tt.want {
				if got := [2]int{st.Slots[i].Status, st.Slots[i].Broker}; got != w {
					t.Errorf("slot %d: status and broker %v, want %v", i, got, w)
				}
			}
		})
	}
}

// FuzzParseInheritChannels: what is accepted never reuses a descriptor of
// the state or of another channel, nor goes below stdio, and belongs to a
// worker of the state.
func FuzzParseInheritChannels(f *testing.F) {
	const state = `{"network":"tcp4","addr":"127.0.0.1:80","slots":[{"socket":3,"pid":10,"lifeline":4},{"socket":5,"pid":0,"lifeline":0}]}`
	f.Add(`{"state":"` + stateDigest(state) + `","workers":[{"pid":10,"status":8,"broker":9}]}`)
	f.Add(`{"state":"` + stateDigest(state) + `","workers":[{"pid":10,"status":3,"broker":-1}]}`)
	f.Add(`{"state":"","workers":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseInheritState(state)
		if err != nil {
			t.Fatal(err)
		}
		if parseInheritChannels(s, state, &st) != nil {
			return
		}
		fds := map[int]bool{3: true, 4: true, 5: true}
		for _, sl := range st.Slots {
			for _, fd := range []int{sl.Status, sl.Broker} {
				if fd == 0 {
					continue
				}
				if fd < 3 || fds[fd] || sl.PID == 0 {
					t.Fatalf("accepted %q: descriptor %d of slot %+v", s, fd, sl)
				}
				fds[fd] = true
			}
		}
	})
}
