package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Dialer opens a connection; ctx bounds the attempt.
type Dialer func(ctx context.Context) (net.Conn, error)

// Connect dials with dial while it accepts one connection on ln, and
// returns both ends; the caller closes them (or hands them to
// StartTransfer) and ln. Each step may take 30 s.
func Connect(t testing.TB, ln net.Listener, dial Dialer) (client, server net.Conn) {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	// A connection accepted after we gave up is closed.
	abandon := func() {
		go func() {
			if a := <-ch; a.c != nil {
				a.c.Close()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := dial(ctx)
	if err != nil {
		abandon()
		t.Fatalf("dial %v: %v", ln.Addr(), err)
	}
	select {
	case a := <-ch:
		if a.err != nil {
			client.Close()
			t.Fatalf("accept on %v: %v", ln.Addr(), a.err)
		}
		return client, a.c
	case <-time.After(30 * time.Second):
		client.Close()
		abandon()
		t.Fatalf("accept on %v: nothing within 30 s", ln.Addr())
	}
	panic("unreachable")
}

// ServeTCP accepts connections on ln and runs handle on each, on its own
// goroutine, with a minute's deadline; the connection is closed when handle
// returns. When the test ends, ln and every open connection are closed and
// the goroutines waited for.
func ServeTCP(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.SetDeadline(time.Now())
			c.Close()
		}
		mu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("server on %v: connections still handled 10 s after the test", ln.Addr())
		}
	})
}

// ServeEcho runs a TCP echo service on ln (as ServeTCP): what arrives is
// sent back until EOF, then the connection is closed.
func ServeEcho(t testing.TB, ln net.Listener) {
	t.Helper()
	ServeTCP(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// CheckEcho dials an echo service with dial, sends msg (concurrently with
// reading, so msg may exceed the socket buffers), half-closes and checks
// that exactly msg comes back followed by a clean close. It fails the test
// naming the first differing offset. Everything has 20 s.
func CheckEcho(t testing.TB, dial Dialer, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		t.Fatalf("echo: dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, halfCloses := c.(closeWriter)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = halfClose(c, int64(len(msg)))
		}
		errc <- err
	}()
	got := make([]byte, 0, len(msg))
	buf := make([]byte, defaultChunk)
	var rerr error
	for {
		if !halfCloses && len(got) >= len(msg) {
			break
		}
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("read after %d bytes: %w", len(got), err)
			break
		}
		if len(got) > len(msg) {
			rerr = fmt.Errorf("got more than the %d bytes sent", len(msg))
			break
		}
	}
	if rerr != nil {
		c.Close() // unblock the writer
	}
	werr := <-errc
	switch {
	case rerr != nil:
		t.Fatalf("echo: %v (write: %v)", rerr, werr)
	case werr != nil:
		t.Fatalf("echo: write: %v", werr)
	}
	if i := firstDiff(got, msg); i >= 0 || len(got) != len(msg) {
		t.Fatalf("echo: got %d bytes back, want the %d sent; they differ from byte %d", len(got), len(msg), i)
	}
}

// KernelDialer dials addr on network ("tcp4", ...) with the kernel's
// stack, in this process's network namespace.
func KernelDialer(network, addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}
