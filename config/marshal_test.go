package config_test

import (
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

// codeBuilt is a config made in Go with unusual but valid values.
func codeBuilt() *config.Config {
	c := config.Default()
	c.Control.Socket = `/tmp/a"b\c/ü.sock`
	c.Metrics.Listen = "[::1]:9100"
	l := config.NewLagg("lagg-0.x_y")
	l.Proto = "loadbalance"
	l.Addresses = []netip.Prefix{netip.MustParsePrefix("2001:db8::7/128"), netip.MustParsePrefix("10.1.2.3/32")}
	l.MTU = 68
	l.MAC = net.HardwareAddr{0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54}
	l.Hash = []string{"l4", "l2"}
	l.UpDelay = 600 * time.Second
	l.DownDelay = time.Millisecond
	l.LACP.Key = 65535
	l.LACP.SystemPriority = 1
	l.LACP.MaxPorts = 1
	l.Ports = []config.Port{
		{Name: "veth-ü", Kind: "tap", Priority: 0, SpeedMbps: 1 << 40},
		{Name: "x", Kind: "afpacket", Priority: 65535},
	}
	c.Laggs = []config.Lagg{l, config.NewLagg("lagg1")}
	c.Services = []config.Service{{Kind: "tcp-discard", Port: 65535, Lagg: "lagg1"}, {Kind: "udp-echo", Port: 1}}
	return c
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(t *testing.T) *config.Config
	}{
		{"full.toml", func(t *testing.T) *config.Config { return mustParseFile(t, "full.toml") }},
		{"minimal.toml", func(t *testing.T) *config.Config { return mustParseFile(t, "minimal.toml") }},
		{"lacp-spellings.toml", func(t *testing.T) *config.Config { return mustParseFile(t, "lacp-spellings.toml") }},
		{"default", func(*testing.T) *config.Config { return config.Default() }},
		{"code built", func(*testing.T) *config.Config { return codeBuilt() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg(t)
			out, err := config.Marshal(c)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, err := config.Parse("marshalled.toml", out)
			if err != nil {
				t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("Parse(Marshal(c)):\ngot  %+v\nwant %+v\ntoml:\n%s", back, c, out)
			}
			again, err := config.Marshal(back)
			if err != nil {
				t.Fatalf("second Marshal: %v", err)
			}
			if string(again) != string(out) {
				t.Errorf("Marshal is not stable:\ngot  %s\nwant %s", again, out)
			}
		})
	}
}

func TestMarshalCanonical(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(t *testing.T) *config.Config
		want string
	}{
		{"default is empty", func(*testing.T) *config.Config { return config.Default() }, ""},
		{"defaults omitted", func(t *testing.T) *config.Config { return mustParseFile(t, "minimal.toml") },
			"[[lagg]]\nname = \"lagg0\"\n\n[[lagg.port]]\nname = \"eth0\"\n"},
		{"multi_speed spelling", func(t *testing.T) *config.Config {
			c, err := config.Parse("t.toml", []byte("[[lagg]]\nname = \"l\"\n[lagg.lacp]\nmulti-linkspeed = false\n"))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, "[[lagg]]\nname = \"l\"\n\n[lagg.lacp]\nmulti_speed = false\n"},
		{"escapes", func(*testing.T) *config.Config {
			c := config.Default()
			c.Control.Socket = `/a"b\c`
			return c
		}, "[control]\nsocket = \"/a\\\"b\\\\c\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Marshal(tt.cfg(t))
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestMarshalFullMatchesFile(t *testing.T) {
	// full.toml sets every key away from its default, so the canonical
	// output has every section; only comments and inline forms differ.
	out, err := config.Marshal(mustParseFile(t, "full.toml"))
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	for _, want := range []string{"[control]", "[metrics]", "[lagg.failover]", "[lagg.lacp]", "multi_speed = false", "[[lagg.port]]", "speed_mbps = 10000", "[[service]]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal(full.toml): got no %q in\n%s", want, out)
		}
	}
}

func TestMarshalRejectsInvalid(t *testing.T) {
	bad := config.Default()
	bad.Laggs = []config.Lagg{config.NewLagg("BAD")}
	tests := []struct {
		name string
		cfg  *config.Config
	}{
		{"nil", nil},
		{"invalid", bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := config.Marshal(tt.cfg); err == nil {
				t.Errorf("Marshal: got %q, nil error; want an error", out)
			}
		})
	}
}

func TestLoadWrittenFile(t *testing.T) {
	out, err := config.Marshal(codeBuilt())
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	path := filepath.Join(t.TempDir(), "ulagg.toml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := codeBuilt(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(Marshal(c)):\ngot  %+v\nwant %+v", got, want)
	}
}
