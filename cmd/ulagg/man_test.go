package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const manDir = "../../docs/man"

// manPages renders both pages from the current sources.
func manPages(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile("../../config/doc.go")
	if err != nil {
		t.Fatal(err)
	}
	p5, err := manPage5(string(src))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"ulagg.8": manPage8(), "ulagg.toml.5": p5}
}

// TestManPagesUpToDate fails when docs/man is stale: a command, a flag or
// a configuration key changed without `go generate ./cmd/ulagg`.
// ULAGG_UPDATE_MAN=1 (what go generate sets) rewrites them instead.
func TestManPagesUpToDate(t *testing.T) {
	for name, want := range manPages(t) {
		path := filepath.Join(manDir, name)
		if os.Getenv("ULAGG_UPDATE_MAN") == "1" {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go generate ./cmd/ulagg writes it)", err)
		}
		if string(got) != want {
			t.Errorf("%s is stale: run go generate ./cmd/ulagg", path)
		}
	}
}

// Every command, every flag of every command and every key of the
// configuration appears in the pages.
func TestManPagesCover(t *testing.T) {
	pages := manPages(t)
	for _, c := range allCommands() {
		if !strings.Contains(pages["ulagg.8"], ".It Nm Cm "+c.name+"\n") {
			t.Errorf("ulagg.8: no entry for command %s", c.name)
		}
		fs, _ := probeCommand(c)
		if fs == nil {
			continue
		}
		for _, f := range commandFlags(fs) {
			if !strings.Contains(pages["ulagg.8"], ".It Fl "+mdocEscape(strings.TrimPrefix(f.name, "-"))) {
				t.Errorf("ulagg.8: no entry for %s %s", c.name, f.name)
			}
		}
	}
	if !strings.Contains(pages["ulagg.8"], "laggproto") {
		t.Errorf("ulagg.8: the ifconfig options are missing")
	}
	for _, key := range []string{"[control]", "runtime_dir", "[[lagg]]", "up_delay_ms", "[lagg.lacp]", "system_priority", "[[lagg.port]]", "speed_mbps", "[[service]]", "max_conns_per_source"} {
		if !strings.Contains(pages["ulagg.toml.5"], mdocEscape(key)) {
			t.Errorf("ulagg.toml.5: no %s", key)
		}
	}
}

// TestManPagesLint is `mandoc -Tlint` on the committed pages: no warning
// at style level or above. CI runs it (mandoc is a Debian package);
// elsewhere it is skipped without mandoc.
func TestManPagesLint(t *testing.T) {
	if _, err := exec.LookPath("mandoc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mandoc is not installed (apt-get install mandoc): %v", err)
		}
		t.Skip("mandoc not installed")
	}
	for _, name := range []string{"ulagg.8", "ulagg.toml.5"} {
		path := filepath.Join(manDir, name)
		var out bytes.Buffer
		cmd := exec.Command("mandoc", "-Tlint", "-Wstyle", path)
		cmd.Stdout, cmd.Stderr = &out, &out
		_ = cmd.Run() // its exit status counts what is filtered below
		var problems []string
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			// Which other pages are installed (lagg(4) is NetBSD's) is the
			// machine's business, not the page's.
			if l == "" || strings.Contains(l, "referenced manual not found") || strings.Contains(l, "mandoc.db") {
				continue
			}
			problems = append(problems, l)
		}
		if len(problems) > 0 {
			t.Errorf("mandoc -Tlint -Wstyle %s:\n%s", path, strings.Join(problems, "\n"))
		}
		// And it renders as text.
		txt, err := exec.Command("mandoc", "-Tutf8", path).Output()
		if err != nil || !bytes.Contains(txt, []byte("link aggregation")) {
			t.Errorf("mandoc -Tutf8 %s: %v\n%s", path, err, txt)
		}
	}
}
