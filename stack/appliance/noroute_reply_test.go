package appliance

import (
	"errors"
	"net"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// TestIsNoRoute: the gonet write errors that mean "no route" are told
// apart from the others by gVisor's own error text.
func TestIsNoRoute(t *testing.T) {
	op := func(e tcpip.Error) error { return &net.OpError{Op: "write", Net: "udp", Err: errors.New(e.String())} }
	for _, c := range []struct {
		err  error
		want bool
	}{
		{op(&tcpip.ErrHostUnreachable{}), true},
		{op(&tcpip.ErrNetworkUnreachable{}), true},
		{op(&tcpip.ErrNoNet{}), true},
		{op(&tcpip.ErrMessageTooLong{}), false},
		{op(&tcpip.ErrClosedForSend{}), false},
		{net.ErrClosed, false},
		{&net.OpError{Op: "write"}, false},
	} {
		if got := isNoRoute(c.err); got != c.want {
			t.Errorf("isNoRoute(%v): got %v, want %v", c.err, got, c.want)
		}
	}
}
