package appliance

import (
	"github.com/prometheus/client_golang/prometheus"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The gVisor stack's traffic counters, beside its drops (stack_drops_total,
// from ustack.Drops): what the IP stack above the laggs received, delivered
// and sent, and its TCP connections.
var stackCounters = []struct {
	d *prometheus.Desc
	v func(*tcpip.Stats) uint64
}{
	{desc("stack_ip_packets_received_total", "IP packets the stack received from the laggs."), func(s *tcpip.Stats) uint64 { return s.IP.PacketsReceived.Value() }},
	{desc("stack_ip_packets_delivered_total", "IP packets the stack delivered to its transport protocols."), func(s *tcpip.Stats) uint64 { return s.IP.PacketsDelivered.Value() }},
	{desc("stack_ip_packets_sent_total", "IP packets the stack sent."), func(s *tcpip.Stats) uint64 { return s.IP.PacketsSent.Value() }},
	{desc("stack_tcp_active_opens_total", "TCP connections the stack opened."), func(s *tcpip.Stats) uint64 { return s.TCP.ActiveConnectionOpenings.Value() }},
	{desc("stack_tcp_passive_opens_total", "TCP connections the stack accepted."), func(s *tcpip.Stats) uint64 { return s.TCP.PassiveConnectionOpenings.Value() }},
	{desc("stack_tcp_resets_sent_total", "TCP resets the stack sent."), func(s *tcpip.Stats) uint64 { return s.TCP.ResetsSent.Value() }},
	{desc("stack_tcp_retransmits_total", "TCP segments the stack retransmitted."), func(s *tcpip.Stats) uint64 { return s.TCP.Retransmits.Value() }},
	{desc("stack_udp_datagrams_received_total", "UDP datagrams the stack received."), func(s *tcpip.Stats) uint64 { return s.UDP.PacketsReceived.Value() }},
	{desc("stack_udp_datagrams_sent_total", "UDP datagrams the stack sent."), func(s *tcpip.Stats) uint64 { return s.UDP.PacketsSent.Value() }},
}

var dStackTCPEstablished = desc("stack_tcp_established_connections", "TCP connections in the ESTABLISHED or CLOSE-WAIT state.")

func collectStack(m metricSink, st tcpip.Stats) {
	for _, sc := range stackCounters {
		m.counter(sc.d, float64(sc.v(&st)))
	}
	m.gauge(dStackTCPEstablished, float64(st.TCP.CurrentEstablished.Value()))
}
