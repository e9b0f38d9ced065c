package wsext

// Incoming bytes take one path whatever the transport: input (or
// inputDirect, for bytes read straight into a large message) parses them
// with the connection's frameReader, which hands whole messages and
// control frames back through the frameSink methods below. The caller
// holds cbMu.

// input parses bytes read from the peer; p may be modified (unmasked in
// place). It reports whether the connection is finished.
func (c *Conn) input(p []byte) (finished bool) {
	c.received()
	c.srv.stats.bytesIn.Add(uint64(len(p)))
	if err := c.rs.feed(p, c); err != nil {
		c.fail(err)
	}
	return c.afterInputLocked()
}

// inputDirect accounts for n bytes read into c.rs.direct().
func (c *Conn) inputDirect(n int) (finished bool) {
	c.received()
	c.srv.stats.bytesIn.Add(uint64(n))
	if err := c.rs.filled(n, c); err != nil {
		c.fail(err)
	}
	return c.afterInputLocked()
}

// afterInputLocked ends a connection whose peer closed once our answer is
// out; it reports whether the connection is finished.
func (c *Conn) afterInputLocked() bool {
	if c.state.Load() == stateClosed {
		return true
	}
	if c.peerClosed.Load() && c.flushed() {
		c.finishLocked()
		return true
	}
	return false
}

// The frameSink methods.

func (c *Conn) limit() int64 { return c.srv.maxMsg.Load() }

func (c *Conn) message(data []byte, isText bool) {
	c.srv.stats.msgsIn.Add(1)
	if c.state.Load() == stateOpen && c.settings.OnMessage != nil {
		defer c.srv.recoverPanic(c)
		c.settings.OnMessage(c, data, isText)
	}
}

func (c *Conn) ping(payload []byte) { c.sendControl(opPong, payload) }

func (c *Conn) pong([]byte) { c.pingAt.Store(0) }

func (c *Conn) close(code int, _ []byte) {
	c.srv.stats.closesReceived.add(code)
	c.peerClosed.Store(true)
	// Echo the peer's code, as RFC 6455 section 5.5.1 suggests.
	c.CloseWithCode(code, "")
}
