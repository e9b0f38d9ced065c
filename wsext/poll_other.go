//go:build !linux

package wsext

import (
	"errors"
	"net"
)

// Without epoll every connection runs on its own goroutine.

var errAgain = errors.New("would block")

func pollAttach(hj, raw net.Conn) (int, []byte, bool) { return -1, nil, false }
func (s *Server) register(c *Conn) error              { return errors.ErrUnsupported }
func (s *Server) detach(*Conn)                        {}
func (s *Server) scheduleFlush(*Conn)                 {}
func (c *Conn) process([]byte) bool                   { return false }
func writev(int, []byte, []byte) (int, error)         { return 0, errors.ErrUnsupported }
func writeBuffers(int, [][]byte) (int, error)         { return 0, errors.ErrUnsupported }
func shutdownWrite(int)                               {}
func closeFD(int)                                     {}
func resetOnClose(int)                                {}
