package appliance_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// TestServicesWarnings: the appliance warns at start when it shows its
// details to the network: metrics on a non-loopback address, an
// http-status service with details = true.
func TestServicesWarnings(t *testing.T) {
	var lb testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&lb, nil))
	cfg := config.Default()
	cfg.Services = []config.Service{{Kind: "http-status", Port: 80}, {Kind: "http-status", Port: 8080, Details: true}}
	a, err := appliance.New(cfg, appliance.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := strings.Count(lb.String(), "http-status serves every lagg's detailed status"); got != 1 {
		t.Errorf("%d warnings about details, want 1 (port 8080):\n%s", got, lb.String())
	}
	const warn = "metrics listen on a non-loopback address"
	for addr, want := range map[string]bool{"127.0.0.1:0": false, "[::1]:0": false, "0.0.0.0:0": true} {
		before := strings.Count(lb.String(), warn)
		m, err := appliance.ListenMetrics(a, addr, log)
		if err != nil && addr == "[::1]:0" {
			continue // no IPv6 here
		}
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		m.Close()
		if got := strings.Count(lb.String(), warn) > before; got != want {
			t.Errorf("metrics on %s: warned %t, want %t", addr, got, want)
		}
	}
}
