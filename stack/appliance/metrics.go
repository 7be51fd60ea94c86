package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ulagg/ulagg/internal/buildinfo"
	"github.com/ulagg/ulagg/lagg"
)

// Enumerations exported as one series per value (1 for the current one).
var (
	lacpMuxStates = []string{"DETACHED", "WAITING", "ATTACHED", "COLLECTING", "DISTRIBUTING"}
	lacpRxStates  = []string{"INITIALIZE", "PORT_DISABLED", "EXPIRED", "DEFAULTED", "CURRENT"}
	lacpSelection = []string{"unselected", "selected", "standby"}
	lacpStateBits = []string{"ACTIVITY", "TIMEOUT", "AGGREGATION", "SYNC", "COLLECTING", "DISTRIBUTING", "DEFAULTED", "EXPIRED"}
	portFlagBits  = []string{"MASTER", "STACK", "ACTIVE", "COLLECTING", "DISTRIBUTING", "STANDBY"}
)

// dropReasons lists every lagg.DropReason name, so that each counter is
// exported from zero. Metrics spell them in snake_case (metricReason), as
// every other label value.
var dropReasons = func() []string {
	var out []string
	for r := lagg.DropReason(0); r < 64; r++ {
		s := r.String()
		if strings.HasPrefix(s, "drop(") {
			break
		}
		out = append(out, s)
	}
	return out
}()

// metricReason is a drop reason as a label value: lagg's names (no-port,
// shown as such by ulagg ifconfig -v) in snake_case (no_port).
func metricReason(r string) string { return strings.ReplaceAll(r, "-", "_") }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("ulagg_"+name, help, labels, nil)
}

var (
	lg = []string{"lagg"}
	lp = []string{"lagg", "port"}

	dLaggInfo      = desc("lagg_info", "A lagg, with its protocol and MAC address.", "lagg", "proto", "mac")
	dLaggAdminUp   = desc("lagg_admin_up", "1 if the lagg is administratively up.", lg...)
	dLaggLinkUp    = desc("lagg_link_up", "1 if the lagg's link is up (RUNNING).", lg...)
	dLaggMTU       = desc("lagg_mtu_bytes", "The lagg's MTU.", lg...)
	dLaggPorts     = desc("lagg_ports", "Number of ports in the lagg.", lg...)
	dLaggRxFrames  = desc("lagg_receive_frames_total", "Frames received by the lagg.", lg...)
	dLaggRxBytes   = desc("lagg_receive_bytes_total", "Bytes received by the lagg.", lg...)
	dLaggTxFrames  = desc("lagg_transmit_frames_total", "Frames sent by the lagg.", lg...)
	dLaggTxBytes   = desc("lagg_transmit_bytes_total", "Bytes sent by the lagg.", lg...)
	dLaggDrops     = desc("lagg_drops_total", "Frames the lagg dropped, by reason.", "lagg", "reason")
	dLaggTxPort    = desc("lagg_tx_port", "1 for the port a failover lagg transmits on.", lp...)
	dLaggFailovers = desc("lagg_failovers_total", "Times the transmitting port changed.", lg...)
	dLaggLastFO    = desc("lagg_last_failover_seconds", "Carrier loss to the first frame on the new port, last failover.", lg...)

	dPortLinkUp = desc("port_link_up", "1 if the port's link is up.", lp...)
	dPortActive = desc("port_active", "1 if the port counts as up after up/down delays.", lp...)
	dPortPrio   = desc("port_priority", "The port's priority (lower is preferred).", lp...)
	dPortMTU    = desc("port_mtu_bytes", "The port's MTU.", lp...)
	// Prometheus' base unit is bytes: 1 Gb/s is 125e6.
	dPortSpeed = desc("port_speed_bytes_per_second", "The port's link speed in bytes a second (bits / 8); 0 if unknown.", lp...)
	// One series per NetBSD LAGG_PORT_BITS flag (the number itself is in
	// the status JSON).
	dPortFlag     = desc("port_flag", "1 if the port has the flag (MASTER, STACK, ACTIVE, COLLECTING, DISTRIBUTING, STANDBY).", "lagg", "port", "flag")
	dPortRxFrames = desc("port_receive_frames_total", "Frames received on the port.", lp...)
	dPortRxBytes  = desc("port_receive_bytes_total", "Bytes received on the port.", lp...)
	dPortTxFrames = desc("port_transmit_frames_total", "Frames sent on the port.", lp...)
	dPortTxBytes  = desc("port_transmit_bytes_total", "Bytes sent on the port.", lp...)
	dPortDrops    = desc("port_drops_total", "Frames dropped on the port, by reason.", "lagg", "port", "reason")
	// Kernel drops are not ulagg's drop reasons: the frames never reached it.
	dPortTxWaits     = desc("port_transmit_waits_total", "Pauses for the port's transmit queue to drain (backpressure): frames delayed, not dropped.", lp...)
	dPortKernelDrops = desc("port_kernel_drops_total", "Frames the kernel dropped before the port read them (socket buffer full).", lp...)
	// A configured port whose interface does not exist (it is attached when it appears).
	dPortMissing = desc("port_missing", "1 if the port is configured but its interface is missing.", lp...)

	dLACPDist      = desc("lacp_distributing_ports", "Ports distributing in the active aggregator.", lg...)
	dLACPFallback  = desc("lacp_fallback", "1 if a port carries traffic as the no-partner fallback.", lg...)
	dLACPUnknown   = desc("lacp_rx_unknown_port_total", "LACP frames for ports the engine does not have.", lg...)
	dLACPMux       = desc("lacp_port_mux_state", "1 for the port's mux machine state.", "lagg", "port", "state")
	dLACPRx        = desc("lacp_port_rx_state", "1 for the port's receive machine state.", "lagg", "port", "state")
	dLACPSelected  = desc("lacp_port_selection", "1 for the port's selection.", "lagg", "port", "selection")
	dLACPState     = desc("lacp_port_state", "The LACP state octet (actor or partner side).", "lagg", "port", "side")
	dLACPStateBit  = desc("lacp_port_state_bit", "1 if the bit is set in the actor's or partner's LACP state.", "lagg", "port", "side", "bit")
	dLACPPDUs      = desc("lacp_port_pdus_total", "LACP and Marker PDUs, by type and direction.", "lagg", "port", "type", "direction")
	dLACPPDUErrors = desc("lacp_port_pdu_errors_total", "Slow-protocol frames not processed, by reason.", "lagg", "port", "reason")
	dLACPChurn     = desc("lacp_port_churn_total", "Entries into the CHURN state, by side.", "lagg", "port", "side")
	// Alarms a remote partner raises.
	dLACPPartners   = desc("lacp_partner_systems", "Partner systems (priority, MAC, key) the lagg's ports see; above 1 is an alarm: a miscabled or rogue link.", lg...)
	dLACPMismatch   = desc("lacp_partner_mismatch", "1 while the lagg's ports see different partner systems.", lg...)
	dLACPMismatches = desc("lacp_partner_mismatches_total", "Times the lagg's ports started seeing different partner systems.", lg...)
	dLACPLooped     = desc("lacp_port_looped", "1 while the port receives our own LACPDUs (looped); it carries no traffic.", lp...)

	// The gVisor stack's own drops (ustack.Drops), one series per reason,
	// and reason="syn_admission": SYNs over limits.syn_rate (synguard.go),
	// reason="no_route": SYNs from a source with no route back, and
	// reason="no_route_reply": udp-echo replies with no route (noroute.go).
	dStackDrops   = desc("stack_drops_total", "Packets the IP stack refused, by reason (see ulagg ifconfig -v).", "reason")
	dCaptureDrops = desc("capture_drops_total", "Frames captures dropped because their client did not keep up.")

	dBuildInfo = desc("build_info", "Always 1: the ulagg build's module version, VCS revision (unknown without VCS information) and Go version.", "version", "revision", "goversion")
)

var allDescs = []*prometheus.Desc{
	dLaggInfo, dLaggAdminUp, dLaggLinkUp, dLaggMTU, dLaggPorts, dLaggRxFrames, dLaggRxBytes,
	dLaggTxFrames, dLaggTxBytes, dLaggDrops, dLaggTxPort, dLaggFailovers, dLaggLastFO,
	dPortLinkUp, dPortActive, dPortPrio, dPortMTU, dPortSpeed, dPortFlag,
	dPortRxFrames, dPortRxBytes, dPortTxFrames, dPortTxBytes, dPortDrops, dPortTxWaits, dPortKernelDrops, dPortMissing,
	dLACPDist, dLACPFallback, dLACPUnknown, dLACPMux, dLACPRx, dLACPSelected, dLACPState,
	dLACPStateBit, dLACPPDUs, dLACPPDUErrors, dLACPChurn, dStackDrops, dCaptureDrops,
	dLACPPartners, dLACPMismatch, dLACPMismatches, dLACPLooped,
	dBuildInfo, dConfigReloads, dConfigLastOK, dConfigLastOKAt, dConfigIfconfig,
}

// collector reads the appliance's status at scrape time; it keeps nothing
// and runs nothing in the background.
type collector struct{ a *Appliance }

// NewCollector returns a Prometheus collector of every lagg's and port's
// state and counters.
func NewCollector(a *Appliance) prometheus.Collector { return collector{a} }

// Describe implements prometheus.Collector.
func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
	for _, sc := range stackCounters {
		ch <- sc.d
	}
	ch <- dStackTCPEstablished
	// metrics_routes.go
	ch <- dRoutes
	for _, d := range vlanDescs { // status_vlan.go
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := metricSink{ch}
	stackDrops, captureDrops := c.a.Drops()
	for _, d := range stackDrops {
		m.counter(dStackDrops, float64(d.Value), d.Name)
	}
	// SYNs the admission guard dropped before the stack saw them.
	m.counter(dStackDrops, float64(c.a.SYNAdmissionDrops()), synAdmissionReason)
	m.counter(dStackDrops, float64(c.a.NoRouteDrops()), "no_route")
	m.counter(dStackDrops, float64(c.a.NoRouteReplyDrops()), "no_route_reply")
	m.counter(dCaptureDrops, float64(captureDrops))
	bi := buildinfo.Read()
	m.gauge(dBuildInfo, 1, bi.Version, bi.ShortRevision(), bi.GoVersion)
	c.a.cfgStats.collect(m)
	collectStack(m, c.a.Stack().Stats())
	for _, st := range c.a.Status() {
		n := st.Name
		m.gauge(dLaggInfo, 1, n, string(st.Proto), st.MAC.String())
		m.gauge(dLaggAdminUp, b2f(st.AdminUp), n)
		m.gauge(dLaggLinkUp, b2f(st.Up), n)
		m.gauge(dLaggMTU, float64(st.MTU), n)
		m.gauge(dLaggPorts, float64(len(st.Ports)), n)
		m.counters(st.Counters, []*prometheus.Desc{dLaggRxFrames, dLaggRxBytes, dLaggTxFrames, dLaggTxBytes, dLaggDrops}, n)
		if st.TxPort != "" {
			m.gauge(dLaggTxPort, 1, n, st.TxPort)
		}
		m.counter(dLaggFailovers, float64(st.Failovers), n)
		m.gauge(dLaggLastFO, st.LastFailover.Seconds(), n)
		dhcpMetrics(m, st) // metrics_dhcp.go
		for _, p := range st.Ports {
			c.port(m, n, p)
			m.gauge(dPortMissing, 0, n, p.Name)
		}
		for _, p := range st.Missing {
			m.gauge(dPortMissing, 1, n, p.Name)
		}
		if l := st.LACP; l != nil {
			m.gauge(dLACPDist, float64(l.Distributing), n)
			m.gauge(dLACPFallback, b2f(l.Fallback), n)
			m.counter(dLACPUnknown, float64(l.RxUnknownPort), n)
			m.gauge(dLACPPartners, float64(l.PartnerSystems), n)
			m.gauge(dLACPMismatch, b2f(l.PartnerMismatch), n)
			m.counter(dLACPMismatches, float64(l.PartnerMismatches), n)
		}
	}
	collectVLANs(m, c.a)  // status_vlan.go
	collectRoutes(m, c.a) // metrics_routes.go
}

func (collector) port(m metricSink, n string, p lagg.PortStatus) {
	m.gauge(dPortLinkUp, b2f(p.LinkUp), n, p.Name)
	m.gauge(dPortActive, b2f(p.Active), n, p.Name)
	m.gauge(dPortPrio, float64(p.Priority), n, p.Name)
	m.gauge(dPortMTU, float64(p.MTU), n, p.Name)
	m.gauge(dPortSpeed, float64(p.SpeedMbps)*1e6/8, n, p.Name)
	for i, f := range portFlagBits {
		m.gauge(dPortFlag, b2f(p.Flags&(1<<i) != 0), n, p.Name, f)
	}
	m.counters(p.Counters, []*prometheus.Desc{dPortRxFrames, dPortRxBytes, dPortTxFrames, dPortTxBytes, dPortDrops}, n, p.Name)
	m.counter(dPortTxWaits, float64(p.Counters.TxWaits), n, p.Name)
	m.counter(dPortKernelDrops, float64(p.KernelDrops), n, p.Name)
	portAdminMetrics(m, n, p)   // metrics_admin.go
	portMonitorMetrics(m, n, p) // metrics_monitor.go
	l := p.LACP
	if l == nil {
		return
	}
	m.enum(dLACPMux, lacpMuxStates, l.Mux, n, p.Name)
	m.enum(dLACPRx, lacpRxStates, l.Rx, n, p.Name)
	m.enum(dLACPSelected, lacpSelection, l.Selected, n, p.Name)
	m.gauge(dLACPLooped, b2f(l.Looped), n, p.Name)
	for _, side := range []struct {
		name  string
		state uint8
	}{{"actor", uint8(l.Actor.State)}, {"partner", uint8(l.Partner.State)}} {
		m.gauge(dLACPState, float64(side.state), n, p.Name, side.name)
		for i, bit := range lacpStateBits {
			m.gauge(dLACPStateBit, b2f(side.state&(1<<i) != 0), n, p.Name, side.name, bit)
		}
	}
	lc := l.Counters
	for _, pdu := range []struct {
		typ, dir string
		v        uint64
	}{
		{"lacpdu", "rx", lc.LACPDUsRx}, {"lacpdu", "tx", lc.LACPDUsTx},
		{"marker", "rx", lc.MarkerRx},
		{"marker_response", "rx", lc.MarkerResponseRx}, {"marker_response", "tx", lc.MarkerResponseTx},
	} {
		m.counter(dLACPPDUs, float64(pdu.v), n, p.Name, pdu.typ, pdu.dir)
	}
	for _, e := range []struct {
		reason string
		v      uint64
	}{
		{"malformed", lc.MalformedRx}, {"unknown", lc.UnknownRx}, {"loopback", lc.LoopbackRx},
		{"link_down", lc.DisabledRx}, {"marker_response_dropped", lc.MarkerDropped},
	} {
		m.counter(dLACPPDUErrors, float64(e.v), n, p.Name, e.reason)
	}
	m.counter(dLACPChurn, float64(lc.ActorChurn), n, p.Name, "actor")
	m.counter(dLACPChurn, float64(lc.PartnerChurn), n, p.Name, "partner")
}

// metricSink sends const metrics; label values follow each Desc's labels.
type metricSink struct{ ch chan<- prometheus.Metric }

func (m metricSink) gauge(d *prometheus.Desc, v float64, labels ...string) {
	m.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (m metricSink) counter(d *prometheus.Desc, v float64, labels ...string) {
	m.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// counters sends rx frames, rx bytes, tx frames, tx bytes and drops by
// reason, in the order of ds.
func (m metricSink) counters(c lagg.Counters, ds []*prometheus.Desc, labels ...string) {
	m.counter(ds[0], float64(c.RxFrames), labels...)
	m.counter(ds[1], float64(c.RxBytes), labels...)
	m.counter(ds[2], float64(c.TxFrames), labels...)
	m.counter(ds[3], float64(c.TxBytes), labels...)
	for _, r := range dropReasons {
		m.counter(ds[4], float64(c.Drops[r]), append(labels, metricReason(r))...)
	}
	for r, v := range c.Drops { // a reason this build does not list
		if !containsString(dropReasons, r) {
			m.counter(ds[4], float64(v), append(labels, metricReason(r))...)
		}
	}
}

// enum sends one series per known value, 1 for cur (added if unknown).
func (m metricSink) enum(d *prometheus.Desc, values []string, cur string, labels ...string) {
	for _, v := range values {
		m.gauge(d, b2f(v == cur), append(labels, v)...)
	}
	if !containsString(values, cur) {
		m.gauge(d, 1, append(labels, cur)...)
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricsServer serves /metrics over HTTP.
type MetricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// ListenMetrics serves the appliance's metrics, with Go runtime and
// process metrics, at http://addr/metrics until Close.
func ListenMetrics(a *Appliance, addr string, log *slog.Logger) (*MetricsServer, error) {
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		NewCollector(a),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "ulagg: metrics at /metrics")
	})
	m := &MetricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		log.Warn("metrics listen on a non-loopback address: whoever reaches it reads every lagg's and port's state (MACs, LACP partners); listen on 127.0.0.1 or [::1] unless a firewall guards it", "addr", ln.Addr().String())
	}
	return m, nil
}

// Addr returns the address the server listens on.
func (m *MetricsServer) Addr() net.Addr { return m.ln.Addr() }

// Close stops the server, letting scrapes in progress finish for up to two
// seconds, and waits for it.
func (m *MetricsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, m.srv.Close())
	}
	<-m.done
	return err
}
