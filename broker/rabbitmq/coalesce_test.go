package rabbitmq

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestCoalescingConn: writes arrive whole and in order, however they are
// grouped; a failed send fails the writes after it; Close ends the sender.
func TestCoalescingConn(t *testing.T) {
	client, server := net.Pipe()
	c := newCoalescingConn(client)
	var want bytes.Buffer
	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.CopyN(&got, server, 3000*7) })
	for i := range 3000 {
		p := []byte{byte(i), byte(i >> 8), 'a', 'b', 'c', 'd', 'e'}
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	wg.Wait()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("the bytes read differ from the bytes written")
	}

	// The peer goes away: a later write reports it.
	server.Close()
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte("more"))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes still succeed after the peer closed")
	}
	if cerr := c.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && !errors.Is(cerr, io.ErrClosedPipe) {
		t.Errorf("Close: %v", cerr)
	}
	select {
	case <-c.done:
	default:
		t.Error("the sender still runs after Close")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("a write after Close succeeded")
	}
}

// TestCoalescingConnBlocksWhenFull: a writer waits while maxPending bytes
// are queued, and goes on once the peer reads.
func TestCoalescingConnBlocksWhenFull(t *testing.T) {
	client, server := net.Pipe()
	c := newCoalescingConn(client)
	defer c.Close()
	big := make([]byte, maxPending)
	if _, err := c.Write(big); err != nil { // the sender takes it, and blocks in the pipe
		t.Fatal(err)
	}
	if _, err := c.Write(big); err != nil { // pending, up to the bound
		t.Fatal(err)
	}
	wrote := make(chan struct{})
	go func() {
		_, _ = c.Write([]byte("x"))
		close(wrote)
	}()
	select {
	case <-wrote:
		t.Fatal("a write went past the bound")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := io.CopyN(io.Discard, server, 2*maxPending+1); err != nil {
		t.Fatal(err)
	}
	<-wrote
	server.Close()
}
