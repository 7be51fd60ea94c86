package config_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

func mustParseFile(t *testing.T, name string) *config.Config {
	t.Helper()
	c, err := config.Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return c
}

func TestParseFull(t *testing.T) {
	got := mustParseFile(t, "full.toml")
	lagg1 := config.NewLagg("lagg1")
	lagg1.Proto = "failover"
	lagg1.Ports = []config.Port{
		{Name: "eth2", Kind: "afpacket", Priority: config.DefaultPriority},
		{Name: "eth3", Kind: "afpacket", Priority: 65535},
	}
	want := &config.Config{
		Control: config.Control{Socket: "/tmp/ulagg-test.sock"},
		Metrics: config.Metrics{Listen: "127.0.0.1:9100"},
		Laggs: []config.Lagg{{
			Name:      "lagg0",
			Proto:     "lacp",
			Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24"), netip.MustParsePrefix("fd00::1/64")},
			MTU:       9000,
			MAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01},
			Hash:      []string{"l3", "l4"},
			UpDelay:   200 * time.Millisecond,
			DownDelay: 1500 * time.Millisecond,
			Failover:  config.Failover{RxAll: false},
			LACP: config.LACP{
				MultiSpeed:     false,
				MaxPorts:       4,
				Rate:           "fast",
				Mode:           "passive",
				SystemPriority: 100,
				Key:            7,
				MinPorts:       2,
				Fallback:       true,
			},
			RoundRobin: config.RoundRobin{Stride: 4},
			Ports: []config.Port{
				{Name: "wm0", Kind: "tap", Priority: 1000, SpeedMbps: 10000},
				{Name: "wm1", Kind: "wire", Priority: 0},
			},
		}, lagg1},
		Services: []config.Service{
			{Kind: "tcp-echo", Port: 7},
			{Kind: "udp-echo", Port: 7, Lagg: "lagg1"},
			{Kind: "http-status", Port: 8080, Lagg: "lagg0"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(full.toml):\ngot  %+v\nwant %+v", got, want)
	}
}

func TestDefaults(t *testing.T) {
	got := mustParseFile(t, "minimal.toml")
	l := config.NewLagg("lagg0")
	l.Ports = []config.Port{{Name: "eth0", Kind: "afpacket", Priority: config.DefaultPriority}}
	want := config.Default()
	want.Laggs = []config.Lagg{l}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(minimal.toml):\ngot  %+v\nwant %+v", got, want)
	}

	// Spell out the defaults once rather than trusting NewLagg.
	checks := []struct {
		name     string
		got, val any
	}{
		{"control.socket", got.Control.Socket, "/run/ulagg/ulagg.sock"},
		{"metrics.listen", got.Metrics.Listen, ""},
		{"proto", l.Proto, "none"},
		{"hash", l.Hash, []string{"l2", "l3", "l4"}},
		{"mac", l.MAC, net.HardwareAddr(nil)},
		{"mtu", l.MTU, uint32(0)},
		{"failover.rx_all", l.Failover.RxAll, true},
		{"lacp", l.LACP, config.LACP{MultiSpeed: true, MaxPorts: 16, Rate: "slow", Mode: "active", SystemPriority: 32768, Key: 0, MinPorts: 1, Fallback: false}},
		{"port.kind", got.Laggs[0].Ports[0].Kind, "afpacket"},
		{"port.priority", got.Laggs[0].Ports[0].Priority, uint16(32768)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.val) {
			t.Errorf("default %s: got %#v, want %#v", c.name, c.got, c.val)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	got, err := config.Parse("empty.toml", nil)
	if err != nil {
		t.Fatalf("Parse(empty): %v", err)
	}
	if want := config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(empty): got %+v, want %+v", got, want)
	}
}

func TestLACPMultiSpeedSpellings(t *testing.T) {
	c := mustParseFile(t, "lacp-spellings.toml")
	want := map[string]bool{"lagg0": false, "lagg1": false, "lagg2": false, "lagg3": true}
	for name, w := range want {
		l := c.Lagg(name)
		if l == nil {
			t.Fatalf("Lagg(%q): got nil, want a lagg", name)
		}
		if l.LACP.MultiSpeed != w {
			t.Errorf("%s: got MultiSpeed %t, want %t", name, l.LACP.MultiSpeed, w)
		}
	}
}

// TestLACPOptionsOnOtherProto checks that protocol options are kept for a
// later protocol switch rather than rejected.
func TestLACPOptionsOnOtherProto(t *testing.T) {
	src := `
[[lagg]]
name = "lagg0"
proto = "failover"
[lagg.lacp]
rate = "fast"
[lagg.failover]
rx_all = false
[[lagg]]
name = "lagg1"
proto = "lacp"
[lagg.failover]
rx_all = false
`
	c, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.Laggs[0].LACP.Rate; got != "fast" {
		t.Errorf("lagg0 lacp rate: got %q, want %q", got, "fast")
	}
	if got := c.Laggs[1].Failover.RxAll; got {
		t.Errorf("lagg1 failover rx_all: got %t, want false", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing): got %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestLaggLookup(t *testing.T) {
	c := mustParseFile(t, "full.toml")
	tests := []struct {
		name string
		want bool
	}{
		{"lagg0", true},
		{"lagg1", true},
		{"lagg2", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := c.Lagg(tt.name)
			if got := l != nil; got != tt.want {
				t.Fatalf("Lagg(%q) != nil: got %t, want %t", tt.name, got, tt.want)
			}
			if l != nil && l.Name != tt.name {
				t.Errorf("Lagg(%q).Name: got %q, want %q", tt.name, l.Name, tt.name)
			}
		})
	}
	// The pointer aliases the config, so callers can edit in place.
	c.Lagg("lagg0").MTU = 1234
	if got := c.Laggs[0].MTU; got != 1234 {
		t.Errorf("after edit through Lagg(): got MTU %d, want 1234", got)
	}
	var nilCfg *config.Config
	if got := nilCfg.Lagg("lagg0"); got != nil {
		t.Errorf("nil config Lagg: got %+v, want nil", got)
	}
}

func TestClone(t *testing.T) {
	orig := mustParseFile(t, "full.toml")
	snapshot := mustParseFile(t, "full.toml")
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone: got %+v, want %+v", c, orig)
	}
	// Mutate every reference-typed field of the clone.
	l := &c.Laggs[0]
	l.Addresses[0] = netip.MustParsePrefix("10.9.9.9/8")
	l.MAC[5] = 0xee
	l.Hash[0] = "l2"
	l.Ports[0].Name = "changed"
	l.LACP.Rate = "slow"
	c.Laggs[1].Name = "renamed"
	c.Services[0].Port = 1
	c.Control.Socket = "/elsewhere"
	if !reflect.DeepEqual(orig, snapshot) {
		t.Errorf("mutating the clone changed the original:\ngot  %+v\nwant %+v", orig, snapshot)
	}
	var nilCfg *config.Config
	if got := nilCfg.Clone(); got != nil {
		t.Errorf("nil Clone: got %+v, want nil", got)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  config.Error
		want string
	}{
		{"all", config.Error{File: "a.toml", Line: 3, Key: "lagg[0].mtu", Msg: "bad"}, "a.toml:3: lagg[0].mtu: bad"},
		{"no line", config.Error{File: "a.toml", Key: "lagg[0]", Msg: "bad"}, "a.toml: lagg[0]: bad"},
		{"no file", config.Error{Line: 3, Msg: "bad"}, "line 3: bad"},
		{"key only", config.Error{Key: "service[1].port", Msg: "bad"}, "service[1].port: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// errLines splits a joined error into its lines, checking that every part
// is an *Error that fits on one line.
func errLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	var lines []string
	for _, p := range parts {
		var ce *config.Error
		if !errors.As(p, &ce) {
			t.Errorf("error %q: got %T, want *config.Error", p, p)
		}
		if strings.Contains(p.Error(), "\n") {
			t.Errorf("error %q: got a newline, want one line", p)
		}
		lines = append(lines, p.Error())
	}
	return lines
}
