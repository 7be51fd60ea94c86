package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRouteUsage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	checkUsage(t, []usageCase{
		{[]string{"route", "-x"}, 2, "unknown flag -x"},
		{[]string{"route", "-s"}, 2, "-s needs the socket path"},
		{[]string{"route", "-s", sock, "flush"}, 2, `unknown command "flush"`},
		{[]string{"route", "-s", sock, "add", "default"}, 2, `"default" needs a gateway`},
		{[]string{"route", "-s", sock, "add", "-net", "10.0.0.0", "192.168.1.254"}, 2, "needs a prefix length"},
		{[]string{"route", "-s", sock, "--json", "add", "default", "192.168.1.254"}, 2, "--json goes with show"},
		{[]string{"route", "-s", sock, "add", "default", "192.168.1.254"}, 1, "cannot reach ulagg at " + sock},
		{[]string{"route", "-s", sock}, 1, "cannot reach ulagg at " + sock}, // show
	})
	code, stdout, _ := ulagg("route", "-h")
	if code != 0 || !strings.Contains(stdout, "ulagg route add -inet6 default fd00::1") {
		t.Errorf("route -h: exit %d, output %q", code, stdout)
	}
	if code, stdout, _ := ulagg("-h"); code != 0 || !strings.Contains(stdout, "route") {
		t.Errorf("ulagg -h does not list route: %q", stdout)
	}
}
