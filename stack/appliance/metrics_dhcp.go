package appliance

import "github.com/ulagg/ulagg/stack/dhcp"

var (
	dDHCPState  = desc("dhcp_state", "1 for the DHCP client's RFC 2131 state (init, selecting, requesting, bound, renewing, rebinding).", "lagg", "state")
	dDHCPExpiry = desc("dhcp_lease_remaining_seconds", "Seconds until the DHCP lease expires; 0 without a lease.", lg...)
	dDHCPLost   = desc("dhcp_leases_lost_total", "DHCP leases lost: expired, or refused by a server (DHCPNAK).", lg...)
)

func init() { allDescs = append(allDescs, dDHCPState, dDHCPExpiry, dDHCPLost) }

var dhcpStates = []string{
	dhcp.Init.String(), dhcp.Selecting.String(), dhcp.Requesting.String(),
	dhcp.Bound.String(), dhcp.Renewing.String(), dhcp.Rebinding.String(),
}

// dhcpMetrics sends the lease state of st's DHCP client, if it runs one.
func dhcpMetrics(m metricSink, st LaggStatus) {
	d := st.DHCP
	if d == nil {
		return
	}
	m.enum(dDHCPState, dhcpStates, d.State.String(), st.Name)
	var left float64
	if d.HasLease {
		left = float64(secondsUntil(d.Now, d.Lease.ExpiresAt()))
	}
	m.gauge(dDHCPExpiry, left, st.Name)
	m.counter(dDHCPLost, float64(d.Lost), st.Name)
}
