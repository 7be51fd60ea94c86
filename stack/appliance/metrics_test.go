package appliance_test

import (
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ulagg/ulagg/stack/appliance"
)

// scrape fetches /metrics from m and parses it with Prometheus' parser.
func scrape(t *testing.T, m *appliance.MetricsServer) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + m.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want ("k=v" pairs), failing if there is not exactly one.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	var found []float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			found = append(found, m.Gauge.GetValue())
		case m.Counter != nil:
			found = append(found, m.Counter.GetValue())
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: got %d series, want 1", name, want, len(found))
	}
	return found[0]
}

func labelValues(fams map[string]*dto.MetricFamily, name, label string, filter ...string) []string {
	var out []string
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range filter {
			k, v, _ := strings.Cut(kv, "=")
			ok = ok && labels[k] == v
		}
		if ok {
			out = append(out, labels[label])
		}
	}
	sort.Strings(out)
	return out
}

func TestMetricsFailover(t *testing.T) {
	r := failoverRig(t)
	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 30*time.Second)

	f := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ulagg_lagg_info", []string{"lagg=lagg0", "proto=failover", "mac=02:00:00:00:0a:01"}, 1},
		{"ulagg_lagg_admin_up", []string{"lagg=lagg0"}, 1},
		{"ulagg_lagg_link_up", []string{"lagg=lagg0"}, 1},
		{"ulagg_lagg_mtu_bytes", []string{"lagg=lagg0"}, 1500},
		{"ulagg_lagg_ports", []string{"lagg=lagg0"}, 2},
		{"ulagg_lagg_tx_port", []string{"lagg=lagg0", "port=wm0"}, 1},
		{"ulagg_lagg_failovers_total", []string{"lagg=lagg0"}, 0},
		{"ulagg_port_priority", []string{"port=wm0"}, 1000},
		{"ulagg_port_priority", []string{"port=wm1"}, 2000},
		{"ulagg_port_link_up", []string{"port=wm1"}, 1},
		{"ulagg_port_flag", []string{"port=wm0", "flag=DISTRIBUTING"}, 1},
		{"ulagg_port_flag", []string{"port=wm1", "flag=DISTRIBUTING"}, 0},
		{"ulagg_port_flag", []string{"port=wm1", "flag=COLLECTING"}, 1},
		{"ulagg_port_speed_bytes_per_second", []string{"port=wm0"}, 125e6},
		{"ulagg_config_reloads_total", []string{"result=success"}, 0},
		{"ulagg_config_last_reload_successful", nil, 1},
		{"ulagg_build_info", []string{"goversion=" + runtime.Version()}, 1},
		{"ulagg_port_transmit_frames_total", []string{"port=wm1"}, 0},
	} {
		t.Run(fmt.Sprint(c.name, c.labels), func(t *testing.T) {
			if got := value(t, f, c.name, c.labels...); got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	for _, name := range []string{"ulagg_lagg_transmit_frames_total", "ulagg_lagg_receive_bytes_total"} {
		if got := value(t, f, name, "lagg=lagg0"); got <= 0 {
			t.Errorf("%s: got %v, want > 0 during a transfer", name, got)
		}
	}
	if got := value(t, f, "ulagg_port_transmit_bytes_total", "port=wm0"); got <= 64<<10 {
		t.Errorf("wm0 transmit bytes: got %v, want more than the %d echoed", got, 64<<10)
	}
	reasons := labelValues(f, "ulagg_lagg_drops_total", "reason", "lagg=lagg0")
	if want := []string{"checksum", "control_frame", "control_malformed", "control_queue_full", "foreign_mac", "inactive_port", "no_port", "not_attached", "tx_error", "tx_queue_full", "vlan"}; strings.Join(reasons, ",") != strings.Join(want, ",") {
		t.Errorf("drop reasons: got %v, want every one, %v", reasons, want)
	}
	if f["go_goroutines"] == nil {
		t.Errorf("Go runtime metrics missing")
	}

	// Pull wm0's cable: a failover to wm1, counted and timed.
	r.wires["wm0"].SetLinkUp(false)
	tr.WaitMore(t, 64<<10, 30*time.Second)
	f = scrape(t, m)
	if got := value(t, f, "ulagg_lagg_failovers_total", "lagg=lagg0"); got != 1 {
		t.Errorf("failovers: got %v, want 1", got)
	}
	if got := value(t, f, "ulagg_lagg_tx_port", "lagg=lagg0", "port=wm1"); got != 1 {
		t.Errorf("tx port wm1: got %v, want 1", got)
	}
	if got := labelValues(f, "ulagg_lagg_tx_port", "port"); len(got) != 1 {
		t.Errorf("tx port series: got %v, want only wm1", got)
	}
	if got := value(t, f, "ulagg_port_link_up", "port=wm0"); got != 0 {
		t.Errorf("wm0 link: got %v, want 0", got)
	}
	if got := value(t, f, "ulagg_lagg_last_failover_seconds", "lagg=lagg0"); got <= 0 || got > 5 {
		t.Errorf("last failover: got %vs, want a small positive duration", got)
	}
	tr.Wait(t, time.Minute)

	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := http.Get("http://" + m.Addr().String() + "/metrics"); err == nil {
		t.Errorf("metrics still served after Close")
	}
}

func TestMetricsLACP(t *testing.T) {
	f := scrape(t, lacpMetrics(t))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ulagg_lacp_distributing_ports", []string{"lagg=lagg0"}, 2},
		{"ulagg_lacp_fallback", []string{"lagg=lagg0"}, 0},
		{"ulagg_lacp_port_mux_state", []string{"port=wm0", "state=DISTRIBUTING"}, 1},
		{"ulagg_lacp_port_mux_state", []string{"port=wm0", "state=DETACHED"}, 0},
		{"ulagg_lacp_port_rx_state", []string{"port=wm1", "state=CURRENT"}, 1},
		{"ulagg_lacp_port_selection", []string{"port=wm1", "selection=selected"}, 1},
		{"ulagg_lacp_port_selection", []string{"port=wm1", "selection=standby"}, 0},
		{"ulagg_lacp_port_state_bit", []string{"port=wm0", "side=actor", "bit=SYNC"}, 1},
		{"ulagg_lacp_port_state_bit", []string{"port=wm0", "side=actor", "bit=DEFAULTED"}, 0},
		{"ulagg_lacp_port_state_bit", []string{"port=wm0", "side=partner", "bit=COLLECTING"}, 1},
		{"ulagg_lacp_port_pdu_errors_total", []string{"port=wm0", "reason=malformed"}, 0},
	} {
		t.Run(fmt.Sprint(c.name, c.labels), func(t *testing.T) {
			if got := value(t, f, c.name, c.labels...); got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	if got := value(t, f, "ulagg_lacp_port_state", "port=wm0", "side=actor"); uint8(got)&0x3d != 0x3d {
		t.Errorf("actor state: got %#x, want ACTIVITY,AGGREGATION,SYNC,COLLECTING,DISTRIBUTING set", uint8(got))
	}
	for _, dir := range []string{"rx", "tx"} {
		if got := value(t, f, "ulagg_lacp_port_pdus_total", "port=wm1", "type=lacpdu", "direction="+dir); got < 1 {
			t.Errorf("LACPDUs %s on wm1: got %v, want at least 1", dir, got)
		}
	}
}
