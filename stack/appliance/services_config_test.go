package appliance_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

// The service limits and [limits] in the configuration file: parsed,
// defaulted, checked and written back.
func TestServicesConfig(t *testing.T) {
	const file = `
[limits]
memory_mb = 256

[[lagg]]
name = "lagg0"

[[service]]
kind = "tcp-echo"
port = 7
max_conns = 100
max_conns_per_source = 4
idle_timeout_s = 60

[[service]]
kind = "udp-echo"
port = 7
rate_per_source = 5

[[service]]
kind = "http-status"
port = 80
details = true

[[service]]
kind = "tcp-discard"
port = 9
`
	cfg, err := config.Parse("limits.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MemoryMB != 256 || cfg.Limits.MemoryLimit() != 256<<20 {
		t.Errorf("limits: %+v", cfg.Limits)
	}
	want := []config.Service{
		{Kind: "tcp-echo", Port: 7, MaxConns: 100, MaxConnsPerSource: 4, IdleTimeout: time.Minute},
		{Kind: "udp-echo", Port: 7, RatePerSource: 5},
		{Kind: "http-status", Port: 80, Details: true},
		{Kind: "tcp-discard", Port: 9},
	}
	if !reflect.DeepEqual(cfg.Services, want) {
		t.Fatalf("services:\ngot  %+v\nwant %+v", cfg.Services, want)
	}
	budgets := []config.ServiceBudget{
		{MaxConns: 100, MaxConnsPerSource: 4, IdleTimeout: time.Minute, RatePerSource: 100},
		{MaxConns: 256, MaxConnsPerSource: 32, IdleTimeout: 5 * time.Minute, RatePerSource: 5},
		{MaxConns: 256, MaxConnsPerSource: 32, IdleTimeout: 30 * time.Second, RatePerSource: 100},
		{MaxConns: 256, MaxConnsPerSource: 32, IdleTimeout: 5 * time.Minute, RatePerSource: 100},
	}
	for i, s := range cfg.Services {
		if got := s.Budget(); got != budgets[i] {
			t.Errorf("%s budget: got %+v, want %+v", s.Kind, got, budgets[i])
		}
	}
	if got := (config.Service{Kind: "tcp-echo", MaxConns: 8}).Budget().MaxConnsPerSource; got != 8 {
		t.Errorf("max_conns 8 alone: %d per source, want 8", got)
	}
	if got := (config.Limits{}).MemoryLimit(); got != config.DefaultMemoryMB<<20 {
		t.Errorf("default memory limit %d", got)
	}

	out, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse("out.toml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("Marshal and Parse again:\n%s\ngot  %+v\nwant %+v", out, back, cfg)
	}
	if def, _ := config.Marshal(config.Default()); strings.Contains(string(def), "limits") {
		t.Errorf("the default config marshals [limits]:\n%s", def)
	}
}

func TestServicesConfigErrors(t *testing.T) {
	for _, c := range []struct{ toml, want string }{
		{"[limits]\nmemory_mb = 8\n", "limits.memory_mb: 8 is out of range 32..1048576 (or 0 for unset)"},
		{"[limits]\nmemory = 8\n", "limits.memory: unknown key"},
		{"[[service]]\nkind = \"tcp-echo\"\nport = 7\ndetails = true\n", "service[0].details: applies to http-status only, not tcp-echo"},
		{"[[service]]\nkind = \"tcp-echo\"\nport = 7\nrate_per_source = 9\n", "service[0].rate_per_source: applies to udp-echo only, not tcp-echo"},
		{"[[service]]\nkind = \"udp-echo\"\nport = 7\nmax_conns = 9\n", "service[0].max_conns: applies to TCP services (tcp-echo, tcp-discard, http-status) only, not udp-echo"},
		{"[[service]]\nkind = \"udp-echo\"\nport = 7\nidle_timeout_s = 9\n", "service[0].idle_timeout_s: applies to TCP services"},
		{"[[service]]\nkind = \"tcp-echo\"\nport = 7\nmax_conns = 4\nmax_conns_per_source = 5\n", "service[0].max_conns_per_source: 5 is more than max_conns (4)"},
		{"[[service]]\nkind = \"tcp-echo\"\nport = 7\nmax_conns = 70000\n", "service[0].max_conns: 70000 is out of range 1..65535"},
		{"[[service]]\nkind = \"tcp-echo\"\nport = 7\nidle_timeout_s = 100000\n", "service[0].idle_timeout_s: 100000 is out of range 1..86400"},
		{"[[service]]\nkind = \"udp-echo\"\nport = 7\nrate_per_source = -1\n", "service[0].rate_per_source: -1 is out of range 1..1000000"},
		{"[[service]]\nkind = \"http-status\"\nport = 80\ndetails = \"yes\"\n", "service[0].details: must be true or false"},
	} {
		_, err := config.Parse("bad.toml", []byte(c.toml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.toml, err, c.want)
		}
	}
	// Validate, for a Config built in code.
	bad := config.Default()
	bad.Services = []config.Service{{Kind: "tcp-discard", Port: 9, IdleTimeout: 1500 * time.Millisecond}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "not a whole number of seconds") {
		t.Errorf("idle timeout of 1.5 s: %v", err)
	}
}
