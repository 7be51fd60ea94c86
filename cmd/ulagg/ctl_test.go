package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	"github.com/ulagg/ulagg/stack/appliance"
)

// ulagg runs the command line in-process: exit code, stdout, stderr.
func ulagg(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := mainArgs(args, &out, &errb)
	return code, out.String(), errb.String()
}

// usageCase is a command line that must exit with code, saying want on
// stderr.
type usageCase struct {
	args []string
	code int
	want string // in stderr
}

// checkUsage runs each case as a subtest named by its words.
func checkUsage(t *testing.T, cases []usageCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr := ulagg(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("got exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

func TestCtlUsageErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	tests := []usageCase{
		{[]string{"ifconfig", "-x"}, 2, "unknown flag -x"},
		{[]string{"ifconfig", "-s"}, 2, "-s needs the socket path"},
		{[]string{"ifconfig", "-a", "lagg0"}, 2, "give no lagg name with it"},
		{[]string{"ifconfig", "-v", "lagg0", "up"}, 2, "they do not go with options"},
		{[]string{"ifconfig", "lagg0", "laggport", "wm0", "pri", "99999"}, 2, "priority 99999 is out of range 0..65535"},
		{[]string{"ifconfig", "lagg0", "frobnicate"}, 2, `unknown option "frobnicate"`},
		{[]string{"ifconfig", "-s", sock, "lagg0"}, 1, "cannot reach ulagg at " + sock},
		{[]string{"save", "-s", sock, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"reload", "-s", sock}, 1, "is `ulagg run` running?"},
		{[]string{"capture", "lagg0"}, 2, "-w FILE is required"},
		{[]string{"capture", "-w", "x.pcap"}, 2, "want LAGG [PORT], got 0 arguments"},
		{[]string{"capture", "-w", "x.pcap", "a", "b", "c"}, 2, "got 3 arguments"},
		{[]string{"capture", "-w", "x.pcap", "-c", "-2", "lagg0"}, 2, "want a count of 0 or more"},
	}
	checkUsage(t, tests)
	code, stdout, _ := ulagg("ifconfig", "-h")
	if code != 0 || !strings.Contains(stdout, "laggport IF [pri N]") {
		t.Errorf("ifconfig -h: exit %d, output %q", code, stdout)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRuntimeEndToEnd runs the runtime of `ulagg run` over an appliance
// with one in-memory wire port and drives it with the CLI.
func TestRuntimeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "ulagg.sock")
	file := filepath.Join(dir, "ulagg.toml")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	toml := fmt.Sprintf(`[control]
socket = %q

[metrics]
listen = %q

[[lagg]]
name = "lagg0"
proto = "failover"
[[lagg.port]]
name = "cw0"
kind = "wire"

[[lagg]]
name = "lagg1"
down = true
`, sock, metricsAddr)
	if err := os.WriteFile(file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	w := linkeptest.NewWire("cw0", "cw0.far", "\x02\x00\x00\x00\x0c\x01", "\x02\x00\x00\x00\x0c\x02", linkeptest.WireOptions{Logger: log})
	defer w.B.Close() // drops what the lagg sent into the unread far end
	open := func(p config.Port, _ *slog.Logger) (linkep.Port, error) {
		if p.Name != "cw0" {
			return nil, fmt.Errorf("open %s: no such interface", p.Name)
		}
		return w.A, nil
	}
	a, err := appliance.New(cfg, appliance.Options{Logger: log, OpenPort: open})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rt, err := startRuntime(a, file, log)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()

	// The file's down = true is applied at start.
	if code, out, errs := ulagg("ifconfig", "-s", sock, "lagg1"); code != 0 || !strings.HasPrefix(out, "lagg1: flags=0x8802<BROADCAST,SIMPLEX,MULTICAST> mtu 1500\n") {
		t.Errorf("ifconfig lagg1: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := ulagg("ifconfig", "-s", sock, "lagg0", "inet", "10.1.1.1", "netmask", "255.255.255.0"); code != 0 {
		t.Fatalf("ifconfig lagg0 inet: exit %d: %s", code, errs)
	}
	if code, out, _ := ulagg("ifconfig", "-s", sock, "-v", "lagg0"); code != 0 || !strings.Contains(out, "\tinet 10.1.1.1/24 broadcast 10.1.1.255 flags 0x0\n") || !strings.Contains(out, "\t\tcw0 pri=32768 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>\n") {
		t.Errorf("ifconfig -v lagg0: exit %d:\n%s", code, out)
	}
	if code, out, _ := ulagg("ifconfig", "-s", sock, "-l"); code != 0 || out != "lagg0 lagg1\n" {
		t.Errorf("ifconfig -l: exit %d, %q", code, out)
	}
	if code, _, errs := ulagg("ifconfig", "-s", sock, "lagg0", "laggport", "nosuch0"); code != 1 || !strings.Contains(errs, "open nosuch0: no such interface") {
		t.Errorf("laggport nosuch0: exit %d, %q", code, errs)
	}

	// Capture: ARP requests for an address nobody answers.
	pcap := filepath.Join(dir, "out.pcap")
	done := make(chan string)
	go func() {
		code, _, errs := ulagg("capture", "-s", sock, "-c", "8", "-w", pcap, "lagg0")
		done <- fmt.Sprintf("exit %d %s", code, errs)
	}()
	var result string
	for result == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := gonet.DialContextTCP(ctx, a.Stack(), tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 1, 1, 2}), Port: 80}, ipv4.ProtocolNumber)
		cancel()
		if err == nil {
			c.Close()
		}
		select {
		case result = <-done:
		case <-time.After(10 * time.Millisecond):
		}
	}
	if result != "exit 0 8 frames captured to "+pcap+"\n" {
		t.Errorf("capture: got %q", result)
	}
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	// The dials' ARP requests, and perhaps the lagg's own announcements
	// (gratuitous ARP for 10.1.1.1, neighbour advertisements for its
	// link-local address), each sent twice.
	arps := 0
	for i := 0; i < 8; i++ {
		data, _, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		switch {
		case len(data) >= 42 && data[12] == 0x08 && data[13] == 0x06 && string(data[38:42]) == "\x0a\x01\x01\x02":
			arps++
		case len(data) >= 42 && data[12] == 0x08 && data[13] == 0x06 && string(data[28:32]) == string(data[38:42]): // gratuitous
		case len(data) >= 14 && data[12] == 0x86 && data[13] == 0xdd:
		default:
			t.Errorf("frame %d: neither an ARP request for 10.1.1.2, an announcement nor IPv6: % x", i, data[:min(len(data), 42)])
		}
	}
	if arps < 2 {
		t.Errorf("captured %d ARP requests for 10.1.1.2, want at least 2", arps)
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after 8 frames: got %v, want EOF", err)
	}
	f.Close()
	if fi, err := os.Stat(pcap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("capture file mode: %v, %v; want 0600", fi.Mode(), err)
	}

	// Metrics.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `ulagg_lagg_admin_up{lagg="lagg1"} 0`) {
		t.Errorf("metrics lack lagg1 admin down:\n%s", body)
	}

	// save writes the runtime change; a broken file is refused by reload.
	if code, out, errs := ulagg("save", "-s", sock); code != 0 || out != "saved the running configuration to "+file+"\n" {
		t.Fatalf("save: exit %d, %q %q", code, out, errs)
	}
	saved, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := saved.Lagg("lagg0").Addresses; len(got) != 1 || got[0].String() != "10.1.1.1/24" {
		t.Errorf("saved addresses: got %v", got)
	}
	good, _ := os.ReadFile(file)
	if err := os.WriteFile(file, []byte("[[lagg]]\nname = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := ulagg("reload", "-s", sock); code != 1 || !strings.Contains(errs, "reload refused, the running configuration stays") || !strings.Contains(errs, "ulagg.toml:2") {
		t.Errorf("reload of a broken file: exit %d, %q", code, errs)
	}
	if a.Lagg("lagg0") == nil || a.Config().Lagg("lagg0").Addresses == nil {
		t.Errorf("the broken file changed the running configuration")
	}

	// SIGHUP: lagg1 up, metrics off.
	edited := strings.Replace(string(good), "down = true\n", "", 1)
	edited = strings.Replace(edited, "[metrics]\nlisten = \""+metricsAddr+"\"\n", "", 1)
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rt.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if code, out, _ := ulagg("ifconfig", "-s", sock, "lagg1"); code != 0 || !strings.HasPrefix(out, "lagg1: flags=0x8803<UP,BROADCAST,SIMPLEX,MULTICAST>") {
		t.Errorf("lagg1 after reload: %q", out)
	}
	if _, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
		t.Errorf("metrics still served after the reload removed [metrics]")
	}

	rt.close()
	rt.close() // idempotent
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after close: %v", err)
	}
}

// TestExamples checks that the shipped example configuration is valid and
// that the systemd unit starts, reloads and grants what ulagg needs.
func TestExamples(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "examples", "ulagg.toml"))
	if err != nil {
		t.Fatalf("examples/ulagg.toml: %v", err)
	}
	if len(cfg.Laggs) != 2 || cfg.Lagg("lagg0").Proto != "lacp" || cfg.Lagg("lagg1").Proto != "failover" {
		t.Errorf("examples/ulagg.toml: got laggs %+v, want lagg0 lacp and lagg1 failover", cfg.Laggs)
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "examples", "ulagg.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Type=notify",
		"WatchdogSec=30s",
		"User=ulagg",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
		"ExecStart=/usr/local/bin/ulagg run -c /etc/ulagg/ulagg.toml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
		"Restart=on-failure",
		"WantedBy=multi-user.target",
	} {
		if !strings.Contains(string(unit), "\n"+line+"\n") {
			t.Errorf("examples/ulagg.service lacks the line %q", line)
		}
	}
}
