package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// complete runs bash with the completion script loaded, a stand-in ulagg
// whose `ifconfig -l` lists lagg0 and lagg1 (the running appliance), and
// COMP_WORDS set to line (cur is its last word, "" after a trailing
// space), and returns COMPREPLY.
func complete(t *testing.T, script, line string) []string {
	t.Helper()
	words := strings.Fields(line)
	if strings.HasSuffix(line, " ") {
		words = append(words, "")
	}
	var q []string
	for _, w := range words {
		q = append(q, "'"+w+"'")
	}
	sh := `source "$1"
ulagg() { [ "$1 $2" = "ifconfig -l" ] && echo lagg0 lagg1; }
COMP_WORDS=(` + strings.Join(q, " ") + `)
COMP_CWORD=` + strconv.Itoa(len(words)-1) + `
_ulagg
printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", "-c", sh, "bash", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash: %v", err) // every Debian has it
	}
	code, script, stderr := ulagg("completion", "bash")
	if code != 0 {
		t.Fatalf("ulagg completion bash: exit %d: %s", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "ulagg.bash")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ifaces, err := os.ReadDir("/sys/class/net")
	if err != nil || len(ifaces) == 0 {
		t.Fatalf("/sys/class/net: %v", err)
	}
	anIface := ifaces[0].Name()
	for _, c := range []struct {
		line      string
		want, not []string
	}{
		{line: "ulagg ", want: []string{"run", "ifconfig", "capture", "completion", "--version"}},
		{line: "ulagg if", want: []string{"ifconfig"}, not: []string{"run"}},
		{line: "ulagg run --", want: []string{"--dry-run", "--log-format", "--log-level", "--strict"}, not: []string{"-c"}},
		{line: "ulagg run --log-format ", want: []string{"text", "json"}},
		{line: "ulagg ifconfig ", want: []string{"lagg0", "lagg1"}},
		{line: "ulagg ifconfig -", want: []string{"-a", "-v", "--json"}},
		{line: "ulagg ifconfig lagg0 lagg", want: []string{"laggport", "laggproto", "lagglacp", "laggportpri"}, not: []string{"create"}},
		{line: "ulagg ifconfig lagg0 laggproto ", want: []string{"failover", "lacp", "loadbalance", "none"}, not: []string{"create"}},
		{line: "ulagg ifconfig lagg0 laggport ", want: []string{anIface}},
		{line: "ulagg ifconfig lagg0 -laggp", want: []string{"-laggproto"}},
		{line: "ulagg capture -w x.pcap ", want: []string{"lagg0", "lagg1"}},
		{line: "ulagg capture -w x.pcap lagg0 ", want: []string{anIface}, not: []string{"lagg1"}},
		{line: "ulagg completion ", want: []string{"bash", "zsh"}},
		{line: "ulagg help ca", want: []string{"capture"}},
	} {
		t.Run(c.line, func(t *testing.T) {
			got := complete(t, path, c.line)
			for _, w := range c.want {
				if !hasWord(got, w) {
					t.Errorf("got %q, want it to offer %q", got, w)
				}
			}
			for _, w := range c.not {
				if hasWord(got, w) {
					t.Errorf("got %q, want no %q", got, w)
				}
			}
		})
	}
}

func TestCompletionZsh(t *testing.T) {
	code, script, _ := ulagg("completion", "zsh")
	if code != 0 || !strings.Contains(script, "bashcompinit") || !strings.Contains(script, "complete -F _ulagg ulagg") {
		t.Errorf("ulagg completion zsh: exit %d, want the bash function behind bashcompinit:\n%s", code, script)
	}
	// Where zsh is installed, the function runs as bashcompinit runs it;
	// CI installs it (.ci/run), and there its absence is a failure.
	_, err := exec.LookPath("zsh")
	if err != nil && os.Getenv("CI") == "true" {
		t.Fatalf("zsh is not installed (CI=true): %v", err)
	}
	if err == nil {
		path := filepath.Join(t.TempDir(), "ulagg.zsh")
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		sh := `source "$1"
ulagg() { [ "$1 $2" = "ifconfig -l" ] && echo lagg0 lagg1; }
t() {
	emulate -L sh; setopt kshglob noshglob braceexpand
	COMP_WORDS=(ulagg ifconfig lagg0 laggproto ""); COMP_CWORD=4
	_ulagg; printf '%s\n' "${COMPREPLY[@]}"
}
t`
		out, err := exec.Command("zsh", "-c", sh, "zsh", path).CombinedOutput()
		if got := strings.Fields(string(out)); err != nil || !hasWord(got, "failover") || !hasWord(got, "lacp") {
			t.Errorf("zsh: ulagg ifconfig lagg0 laggproto <TAB>: got %q, %v; want the protocols", out, err)
		}
	}
	if code, _, stderr := ulagg("completion", "fish"); code != 2 || !strings.Contains(stderr, "want bash or zsh") {
		t.Errorf("ulagg completion fish: exit %d, %q; want 2 and a usage error", code, stderr)
	}
}

func hasWord(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
