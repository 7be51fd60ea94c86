package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/ulagg/ulagg/config"
)

// One metrics port everywhere: 9477 (9100 is node_exporter's).
func TestOneMetricsPort(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "examples", "ulagg.toml"))
	if err != nil {
		t.Fatalf("examples/ulagg.toml: %v", err)
	}
	if _, port, err := net.SplitHostPort(cfg.Metrics.Listen); err != nil || port != "9477" {
		t.Errorf("examples/ulagg.toml: metrics listen %q, want port 9477", cfg.Metrics.Listen)
	}
	other := regexp.MustCompile(`(127\.0\.0\.1|localhost|\]):(9[0-9]{3})\b`)
	for _, f := range []string{"README.md", "examples/quickstart.sh", "examples/ulagg.toml", "examples/grafana-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range other.FindAllStringSubmatch(string(b), -1) {
			if m[2] != "9477" {
				t.Errorf("%s: metrics port %s in %q, want 9477", f, m[2], m[0])
			}
		}
	}
}
