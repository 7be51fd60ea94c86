package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

// `ulagg ifconfig -h` names the option words of the VLAN, DHCP, SLAAC,
// link-monitor and port-admin features: completion and ulagg(8) are made
// from that text, so a word missing there is missing everywhere. Each
// example line also parses, so the usage names words the parser takes.
func TestIfconfigUsageWords(t *testing.T) {
	keywords, _ := ifconfigWords()
	for _, c := range []struct {
		line  string
		words []string // offered by completion, read from the usage
	}{
		{"lagg0 laggmonitor arp 192.0.2.1 ns 2001:db8::1 interval 100 missed 3 validate active require all", []string{"laggmonitor", "arp", "ns", "interval", "missed", "validate", "require"}},
		{"lagg0 laggmonitor -arp ns 2001:db8::1", []string{"-arp"}},
		{"lagg0 laggmonitor -ns arp 192.0.2.1", []string{"-ns"}},
		{"lagg0 -laggmonitor", []string{"-laggmonitor"}},
		{"lagg0 inet dhcp", []string{"inet", "dhcp"}},
		{"lagg0 inet -dhcp", []string{"-dhcp"}},
		{"lagg0 inet6 slaac", []string{"inet6", "slaac"}},
		{"lagg0 inet6 -slaac", []string{"-slaac"}},
		{"lagg0 laggport eth0 -active", []string{"laggport", "-active"}},
		{"lagg0 laggport eth0 active", []string{"active"}},
		{"vlan100 create vlan 100 vlanif lagg0 inet 10.100.0.1/24", []string{"create", "vlan", "vlanif"}},
		{"vlan100 -vlanif", []string{"-vlanif"}},
		{"vlan100 inet dhcp", []string{"dhcp"}},
		{"vlan100 destroy", []string{"destroy"}},
	} {
		if _, err := config.ParseIfconfig(strings.Fields(c.line)); err != nil {
			t.Errorf("ulagg ifconfig %s: %v", c.line, err)
		}
		for _, w := range c.words {
			if !slices.Contains(keywords, w) {
				t.Errorf("ulagg ifconfig -h: no option word %q (for ulagg ifconfig %s); got %q", w, c.line, keywords)
			}
		}
	}
	c, _ := lookupCommand("ifconfig")
	_, usage := probeCommand(c)
	for _, s := range []string{"[-z]", "vlanN OPTION", "no DHCPv6"} {
		if !strings.Contains(usage, s) {
			t.Errorf("ulagg ifconfig -h does not say %q:\n%s", s, usage)
		}
	}
}
