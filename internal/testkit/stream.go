package testkit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

// Stream returns the deterministic pseudo-random byte stream for seed
// (ChaCha8): the sender writes it and the receiver regenerates it to
// compare.
func Stream(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "ulagg testkit byte stream")
	return rand.NewChaCha8(s)
}

// Bytes returns the first n bytes of the stream for seed.
func Bytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = Stream(seed).Read(b)
	return b
}

const (
	defaultChunk     = 64 << 10
	defaultIOTimeout = 30 * time.Second
)

// closeWriter is a connection that can half-close (gonet.TCPConn and
// net.TCPConn both can).
type closeWriter interface{ CloseWrite() error }

// TransferOptions describe a stream for StartTransfer and StartEcho.
type TransferOptions struct {
	Name  string // in failure messages; "transfer" if empty
	Seed  uint64
	Size  int64         // bytes to send; < 0: until Stop
	Chunk int           // bytes per write; 0: 64 KiB
	Pace  time.Duration // pause after each write, to bound the rate
	// Window bounds the bytes sent but not yet verified (0: no bound). An
	// echo through a gVisor service needs it after heavy loss: see
	// integration's ovsEchoWindow.
	Window int64
	// IOTimeout is the deadline of each read and write, and how long the
	// sender waits for the window to open (0: 30 s): a stream that stalls
	// that long fails.
	IOTimeout time.Duration
}

func (o *TransferOptions) defaults() {
	if o.Name == "" {
		o.Name = "transfer"
	}
	if o.Chunk <= 0 {
		o.Chunk = defaultChunk
	}
	if o.IOTimeout <= 0 {
		o.IOTimeout = defaultIOTimeout
	}
}

// SendStream writes size bytes of the stream for seed to c, then
// half-closes c if it can. Each write has a 30 s deadline.
func SendStream(c net.Conn, seed uint64, size int64) error {
	o := TransferOptions{Seed: seed, Size: size}
	o.defaults()
	return send(c, &o, nil, new(atomic.Int64), nil)
}

// send writes the stream o describes to c: o.Size bytes, or with o.Size < 0
// until stop is closed, then half-closes c. sent follows its progress;
// verified (with o.Window) is what the other side has checked.
func send(c net.Conn, o *TransferOptions, stop <-chan struct{}, sent, verified *atomic.Int64) error {
	src := Stream(o.Seed)
	buf := make([]byte, o.Chunk)
	var n int64
	for o.Size < 0 || n < o.Size {
		if stop != nil {
			select {
			case <-stop:
				if o.Size < 0 {
					return halfClose(c, n)
				}
			default:
			}
		}
		if o.Window > 0 && verified != nil {
			for since := time.Now(); n-verified.Load() > o.Window; time.Sleep(50 * time.Microsecond) {
				if time.Since(since) > o.IOTimeout {
					return fmt.Errorf("after %d bytes sent: nothing verified for %v", n, o.IOTimeout)
				}
			}
		}
		b := buf
		if o.Size >= 0 && o.Size-n < int64(len(b)) {
			b = b[:o.Size-n]
		}
		_, _ = src.Read(b)
		_ = c.SetWriteDeadline(time.Now().Add(o.IOTimeout))
		k, err := c.Write(b)
		n += int64(k)
		sent.Add(int64(k))
		if err != nil {
			return fmt.Errorf("write after %d bytes: %w", n, err)
		}
		if o.Pace > 0 {
			time.Sleep(o.Pace)
		}
	}
	return halfClose(c, n)
}

func halfClose(c net.Conn, n int64) error {
	if cw, ok := c.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("half-close after %d bytes: %w", n, err)
		}
	}
	return nil
}

// VerifyStream reads c to EOF and compares every byte with the stream for
// seed. It returns the bytes verified and, on a difference, an error that
// names the first differing offset; a reset or any other read error (each
// read has a 30 s deadline) is an error too. got, if not nil, follows its
// progress.
func VerifyStream(c net.Conn, seed uint64, got *atomic.Int64) (int64, error) {
	return verify(c, seed, -1, defaultIOTimeout, got)
}

// verify is VerifyStream; with size >= 0 more than size bytes is an error.
func verify(c net.Conn, seed uint64, size int64, timeout time.Duration, got *atomic.Int64) (int64, error) {
	want := Stream(seed)
	buf := make([]byte, defaultChunk)
	exp := make([]byte, defaultChunk)
	var n int64
	for {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		k, err := c.Read(buf)
		if k > 0 {
			if size >= 0 && n+int64(k) > size {
				return n, fmt.Errorf("got more than the %d bytes sent", size)
			}
			_, _ = want.Read(exp[:k])
			if i := firstDiff(buf[:k], exp[:k]); i >= 0 {
				return n, fmt.Errorf("byte %d: got %#02x, want %#02x (the stream differs from there)", n+int64(i), buf[i], exp[i])
			}
			n += int64(k)
			if got != nil {
				got.Add(int64(k))
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read after %d bytes: %w", n, err)
		}
	}
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
