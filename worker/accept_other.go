//go:build !linux

package worker

import "net"

// Shedding at the descriptor limit is implemented on Linux only; elsewhere
// the accept loop only backs off.

func openSpare() int              { return -1 }
func closeSpare(int)              {}
func drain(net.Listener, int) int { return 0 }
