package appliance

import (
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

func TestPeerAllowed(t *testing.T) {
	tests := []struct {
		peer, self uint32
		want       bool
	}{
		{1000, 1000, true},
		{0, 1000, true}, // root
		{1001, 1000, false},
		{65534, 0, false},
		{0, 0, true},
	}
	for _, tt := range tests {
		if got := peerAllowed(tt.peer, tt.self); got != tt.want {
			t.Errorf("peerAllowed(peer %d, self %d): got %v, want %v", tt.peer, tt.self, got, tt.want)
		}
	}
}

func TestFormatPieces(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"flags up running", bitString(IfFlags(LaggStatus{AdminUp: true, Status: lagg.Status{Up: true}}), ifFlagNames), "0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST>"},
		{"flags up, no link", bitString(IfFlags(LaggStatus{AdminUp: true}), ifFlagNames), "0x8803<UP,BROADCAST,SIMPLEX,MULTICAST>"},
		{"flags down, link up", bitString(IfFlags(LaggStatus{Status: lagg.Status{Up: true}}), ifFlagNames), "0x8802<BROADCAST,SIMPLEX,MULTICAST>"},
		{"no bits", bitString(0, ifFlagNames), "0x0"},
		{"port flags zero", portFlagString(0), "0x0"},
		{"port flags", portFlagString(lagg.PortActive | lagg.PortStandby), "0x24<ACTIVE,STANDBY>"},
		{"lacp id", lacpID(0x8000, [6]byte{2, 0, 0, 0xab, 0, 1}, 7), "[8000,02-00-00-AB-00-01,0007]"},
		{"plural 1", plural(1, "packet"), "1 packet"},
		{"plural 0", plural(0, "packet"), "0 packets"},
		{"millis", fmtMillis(1.2345), "1.234 ms"},
		{"millis whole", fmtMillis(0), "0 ms"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestFormatAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.168.1.1/24", "\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0\n"},
		{"10.1.2.3/8", "\tinet 10.1.2.3/8 broadcast 10.255.255.255 flags 0x0\n"},
		{"172.16.5.4/12", "\tinet 172.16.5.4/12 broadcast 172.31.255.255 flags 0x0\n"},
		{"10.0.0.1/31", "\tinet 10.0.0.1/31 flags 0x0\n"},
		{"10.0.0.1/32", "\tinet 10.0.0.1/32 flags 0x0\n"},
		{"fd00::1/64", "\tinet6 fd00::1/64 flags 0x0\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		formatAddress(&b, netip.MustParsePrefix(tt.in))
		if b.String() != tt.want {
			t.Errorf("formatAddress(%s): got %q, want %q", tt.in, b.String(), tt.want)
		}
	}
}

// TestControlBadRequests sends malformed requests on a raw connection.
func TestControlBadRequests(t *testing.T) {
	a, err := New(config.Default(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sock := filepath.Join(t.TempDir(), "c.sock")
	s, err := ListenControl(a, ControlOptions{Path: sock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name, send, want string
	}{
		{"not JSON", "hello\n", "bad request: invalid character"},
		{"too long", strings.Repeat("x", maxRequest+10), "bad request: request longer than 1048576 bytes"},
		{"no newline", `{"cmd":"status"}`, `"ok":true`},
		{"empty", "\n", "bad request: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				_, _ = c.Write([]byte(tt.send))
				_ = c.(*net.UnixConn).CloseWrite()
			}()
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			if got := string(buf[:n]); !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
}
