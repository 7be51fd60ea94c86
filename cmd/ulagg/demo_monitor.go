package main

import (
	"net/netip"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
)

// silentFailure is the demo's link monitor step: lagg0 goes back to
// failover with an ARP monitor on the host (interval 100 ms, missed 3);
// then the host's bridge stops forwarding on the primary port's link
// (bridge port state listening) while both carriers stay up. Carrier
// detection sees nothing; the monitor's probes through that port go
// unanswered and failover moves within interval × (missed + 1).
func (d *demo) silentFailure() error {
	lc := *d.a.Config().Lagg("lagg0")
	lc.Proto = config.ProtoFailover
	lc.Monitor = config.Monitor{ARPTargets: []netip.Addr{netip.MustParseAddr(demoHostIP)}, Interval: 100 * time.Millisecond, MissedMax: 3}
	if err := d.a.ApplyLagg(lc); err != nil {
		return err
	}
	d.say("   lagg0 back to failover with `laggmonitor arp %s interval 100 missed 3`", demoHostIP)
	d.say("   (each port probes through itself from its own MAC with sender IP 0.0.0.0)")
	if err := d.waitFor(5*time.Second, "probes answered on both ports", func() bool {
		st := d.l.Status()
		for _, p := range st.Ports {
			if p.Monitor == nil || p.Monitor.Replies < 2 {
				return false
			}
		}
		return st.TxPort == demoPort0
	}); err != nil {
		return err
	}
	bridgePort := demoFarEnd(0)
	// A bridge port in the listening state forwards nothing either way
	// and hands nothing to the host's stack, carrier up (the "disabled"
	// state is not kept while STP is off).
	setState := func(state string) error {
		return lab.Run("ip", "-n", d.host, "link", "set", "dev", bridgePort, "type", "bridge_slave", "state", state)
	}
	listening := func() error { return setState("1") }
	took, sent, lost, longest, err := d.probedSwitch(listening, demoPort1, "the monitor's failover", 3*time.Second)
	if err != nil {
		_ = setState("3")
		return err
	}
	st := d.l.Status()
	ps := st.Port(demoPort0)
	d.say("   the host's bridge stopped forwarding on %s's link (port state listening); %s still has carrier (link %s)", demoPort0, demoPort0, upDown(ps.LinkUp))
	d.say("   after %v: laggport %s monitor down (%s); transmitting on %s", took.Round(time.Millisecond), demoPort0, ps.Monitor.Reason, st.TxPort)
	d.say("   UDP probes: %d sent, %d lost (longest gap %d ms)", sent, lost, longest)
	if err := setState("3"); err != nil { // forwarding
		return err
	}
	back := time.Now()
	if err := d.waitFor(3*time.Second, "the port answering again", func() bool { return d.l.Status().TxPort == demoPort0 }); err != nil {
		return err
	}
	d.say("   forwarding again: %s answered and took transmission back after %v", demoPort0, time.Since(back).Round(time.Millisecond))
	return nil
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}
