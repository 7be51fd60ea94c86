package testkit

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Transfer is one byte-checked stream: the sender writes the stream for a
// seed, the receiver reads it to EOF and compares every byte. It runs
// between two ends of a connection (StartTransfer) or through an echo
// service and back on one (StartEcho).
type Transfer struct {
	o        TransferOptions
	sent     atomic.Int64
	verified atomic.Int64
	start    time.Time
	stop     chan struct{}
	stopOnce sync.Once
	sendDone chan struct{} // closed once res.SendErr is set
	done     chan struct{} // closed once res is complete and both ends closed
	res      TransferResult
}

// TransferResult is how a transfer ended.
type TransferResult struct {
	Sent     int64 // bytes written
	Received int64 // bytes verified
	Elapsed  time.Duration
	SendErr  error
	RecvErr  error
}

// MBps is the verified rate in 10^6 bytes per second.
func (r TransferResult) MBps() float64 { return float64(r.Received) / 1e6 / r.Elapsed.Seconds() }

// StartTransfer sends the stream o describes from sender to receiver, two
// ends of one connection (Connect makes them); it takes both. The receiver
// closes its end once it has read to EOF, and the sender, after its
// half-close, reads on until that close: so a clean end means every byte
// arrived, in order and intact, and neither side saw a reset. When the test
// ends, a transfer still running is stopped and its ends closed.
func StartTransfer(t testing.TB, sender, receiver net.Conn, o TransferOptions) *Transfer {
	t.Helper()
	return start(t, sender, receiver, o, false)
}

// StartEcho sends the stream o describes on c, a connection to an echo
// service, and verifies what comes back; it takes c. A clean end means
// every byte came back intact and the service closed after the
// half-close, with no reset.
func StartEcho(t testing.TB, c net.Conn, o TransferOptions) *Transfer {
	t.Helper()
	return start(t, c, c, o, true)
}

func start(t testing.TB, sender, receiver net.Conn, o TransferOptions, echo bool) *Transfer {
	o.defaults()
	x := &Transfer{
		o: o, start: time.Now(),
		stop: make(chan struct{}), sendDone: make(chan struct{}), done: make(chan struct{}),
	}
	// A failing side closes both ends, so the other does not wait for its
	// deadline.
	abort := func() {
		sender.Close()
		receiver.Close()
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(x.sendDone)
		var verified *atomic.Int64
		if echo {
			verified = &x.verified
		}
		err := send(sender, &x.o, x.stop, &x.sent, verified)
		if err == nil && !echo {
			// The receiver closes once it has read everything.
			_ = sender.SetReadDeadline(time.Now().Add(o.IOTimeout))
			n, err2 := io.Copy(io.Discard, sender)
			if err2 != nil || n != 0 {
				err = fmt.Errorf("after sending: got %d bytes and %v, want none and EOF (the receiver's close)", n, err2)
			}
		}
		x.res.SendErr = err
		if err != nil {
			abort()
		}
	}()
	go func() {
		defer close(recvDone)
		x.res.Received, x.res.RecvErr = verify(receiver, o.Seed, o.Size, o.IOTimeout, &x.verified)
		switch {
		case x.res.RecvErr != nil:
			abort()
		case !echo:
			receiver.Close() // the sender waits for it
		}
	}()
	go func() {
		<-x.sendDone
		<-recvDone
		x.res.Elapsed = time.Since(x.start)
		x.res.Sent = x.sent.Load()
		abort()
		close(x.done)
	}()
	t.Cleanup(func() {
		// Normally done already. After a failure, end it: stop (an
		// open-ended sender half-closes), then close both ends.
		x.Stop()
		select {
		case <-x.done:
			return
		case <-time.After(5 * time.Second):
		}
		abort()
		select {
		case <-x.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not end", x.o.Name)
		}
	})
	return x
}

// Sent returns the bytes written so far.
func (x *Transfer) Sent() int64 { return x.sent.Load() }

// Received returns the bytes verified so far.
func (x *Transfer) Received() int64 { return x.verified.Load() }

// Done is closed once the transfer has ended, well or not.
func (x *Transfer) Done() <-chan struct{} { return x.done }

// Stop makes an open-ended transfer's sender half-close after the chunk it
// is writing, so that the transfer ends. A transfer with a size ignores
// it.
func (x *Transfer) Stop() { x.stopOnce.Do(func() { close(x.stop) }) }

// Await waits until at least n bytes were verified. It returns an error if
// the transfer ended first, if the sender failed, or after timeout.
func (x *Transfer) Await(n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for x.verified.Load() < n {
		select {
		case <-x.done:
			if x.verified.Load() >= n {
				return nil
			}
			return fmt.Errorf("%s ended after %d bytes verified, before %d: sender: %v; receiver: %v",
				x.o.Name, x.res.Received, n, x.res.SendErr, x.res.RecvErr)
		case <-x.sendDone:
			if err := x.res.SendErr; err != nil {
				return fmt.Errorf("%s: sender failed with %d bytes verified, waiting for %d: %v", x.o.Name, x.verified.Load(), n, err)
			}
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d bytes verified after %v, want %d", x.o.Name, x.verified.Load(), timeout, n)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// WaitReceived waits until at least n bytes were verified, failing the
// test as Await describes.
func (x *Transfer) WaitReceived(t testing.TB, n int64, timeout time.Duration) {
	t.Helper()
	if err := x.Await(n, timeout); err != nil {
		t.Fatal(err)
	}
}

// WaitMore waits until n more bytes than now were verified, so that a
// change made next is made while data flows.
func (x *Transfer) WaitMore(t testing.TB, n int64, timeout time.Duration) {
	t.Helper()
	x.WaitReceived(t, x.Received()+n, timeout)
}

// Wait stops an open-ended transfer (Stop), waits for the transfer to end
// and fails the test unless it ended cleanly (see Result).
func (x *Transfer) Wait(t testing.TB, timeout time.Duration) TransferResult {
	t.Helper()
	x.Stop()
	select {
	case <-x.done:
	case <-time.After(timeout):
		t.Fatalf("%s: not done within %v (sent %d, verified %d)", x.o.Name, timeout, x.sent.Load(), x.verified.Load())
	}
	r, err := x.Result()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Result waits for the transfer to end (see Done) and returns how it
// ended, and an error unless it ended cleanly: no error on either side,
// every byte sent verified (at least one), and with a size, all of it.
func (x *Transfer) Result() (TransferResult, error) {
	<-x.done
	r := x.res
	var problems []string
	if r.SendErr != nil {
		problems = append(problems, fmt.Sprintf("sender: %v", r.SendErr))
	}
	if r.RecvErr != nil {
		problems = append(problems, fmt.Sprintf("receiver: %v", r.RecvErr))
	}
	if r.Received != r.Sent || (x.o.Size >= 0 && r.Received != x.o.Size) || r.Sent == 0 {
		problems = append(problems, fmt.Sprintf("verified %d bytes of %d sent (size %d)", r.Received, r.Sent, x.o.Size))
	}
	if len(problems) > 0 {
		return r, fmt.Errorf("%s: %s", x.o.Name, joinLines(problems))
	}
	return r, nil
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for i, l := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(l)
	}
	return b.String()
}
