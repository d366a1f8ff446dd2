package rabbitmq

import (
	"net"
	"sync"
)

// maxPending bounds the bytes a coalescingConn holds for its writer; a
// Write waits while more are pending, as it would wait for the socket.
const maxPending = 1 << 20

// coalescingConn sends what amqp091 writes from a goroutine of its own, so
// that the frames written while a send is in the socket leave together in
// the next one. amqp091 flushes after every message; without this, a
// relay publishing a page of 500 events makes 500 write system calls, and
// the server reads 500 segments. Write returns once the bytes are queued:
// a message is only ever known to have arrived by its publisher confirm,
// and a failed send fails the next Write and closes the connection, which
// amqp091's reader then reports.
type coalescingConn struct {
	net.Conn
	mu      sync.Mutex
	cond    sync.Cond
	pending []byte
	spare   []byte
	err     error // the first failed send; later writes fail with it
	closed  bool
	done    chan struct{}
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, done: make(chan struct{})}
	cc.cond.L = &cc.mu
	go cc.send()
	return cc
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.pending) > 0 && len(c.pending)+len(p) > maxPending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

// send writes what is pending until the connection closes or a write fails.
func (c *coalescingConn) send() {
	defer close(c.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.pending) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.pending) == 0 {
			return // closed, and everything sent
		}
		out := c.pending
		c.pending, c.spare = c.spare[:0], nil
		c.cond.Broadcast() // room for writers waiting on maxPending
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		c.spare = out[:0]
		if err != nil {
			c.err = err
			c.pending = nil
			c.cond.Broadcast()
			// The reader learns of it too, and amqp091 shuts down.
			_ = c.Conn.Close()
			return
		}
	}
}

// Close closes the connection at once. amqp091 closes it only after the
// server answered its connection.close, so nothing it still needed sent is
// pending then; after a failure, what is pending is lost with the socket, as
// its kernel buffer would be.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	err := c.Conn.Close() // also ends a send blocked in the socket
	<-c.done
	return err
}
