package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestHashAndZeroUsage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	checkUsage(t, []usageCase{
		{[]string{"hash", "lagg0", "tcp", "1.1.1.1:1"}, 2, "want LAGG PROTO SRC:PORT DST:PORT"},
		{[]string{"hash", "lagg0", "gre", "1.1.1.1:1", "2.2.2.2:2"}, 2, `unknown protocol "gre"`},
		{[]string{"hash", "lagg0", "tcp", "1.1.1.1:1", "2.2.2.2:2", "--vlan", "5000"}, 2, "want 1..4094"},
		{[]string{"hash", "lagg0", "tcp", "1.1.1.1:1", "2.2.2.2:2", "--dst-mac", "zz"}, 2, "want an Ethernet MAC address"},
		{[]string{"hash", "-s", sock, "lagg0", "tcp", "1.1.1.1:1", "[fd00::1]:2"}, 2, "not of the same IP version"},
		// Flags after the words parse too; then the socket is tried.
		{[]string{"hash", "lagg0", "udp", "1.1.1.1:1", "2.2.2.2:2", "--vlan", "7", "-s", sock}, 1, "cannot reach ulagg at " + sock},
		{[]string{"ifconfig", "-z", "lagg0", "up"}, 2, "they do not go with options"},
		{[]string{"ifconfig", "-vz", "-s", sock, "lagg0"}, 1, "cannot reach ulagg at " + sock},
	})
	if code, stdout, _ := ulagg("hash", "-h"); code != 0 || !strings.Contains(stdout, "roundrobin") {
		t.Errorf("hash -h: exit %d, output %q", code, stdout)
	}
	if code, stdout, _ := ulagg("ifconfig", "-h"); code != 0 || !strings.Contains(stdout, "-z zeroes the counters") || !strings.Contains(stdout, "-active") {
		t.Errorf("ifconfig -h: exit %d, output %q", code, stdout)
	}
}
