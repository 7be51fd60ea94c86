package appliance_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// scrapeText fetches /metrics as the text Prometheus reads.
func scrapeText(t *testing.T, m *appliance.MetricsServer) []byte {
	t.Helper()
	resp, err := http.Get("http://" + m.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return b
}

// lacpMetrics runs a LACP lagg (so that every family, LACP ones included,
// has series) with metrics, both ports distributing, and returns its
// metrics server.
func lacpMetrics(t *testing.T) *appliance.MetricsServer {
	t.Helper()
	r := newCtlRig(t, `
[[lagg]]
name = "lagg0"
proto = "lacp"
addresses = ["192.168.1.1/24"]
[[lagg.port]]
name = "wm0"
kind = "wire"
[[lagg.port]]
name = "wm1"
kind = "wire"
`, "lacp", "wm0", "wm1")
	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	testkit.WaitFor(t, 30*time.Second, "both ports distributing", func() bool {
		st := r.a.Lagg("lagg0").Status()
		return st.LACP != nil && st.LACP.Distributing == 2
	})
	return m
}

// TestMetricsPromlint is `promtool check metrics` on a live scrape: every
// name, unit, help text and counter suffix as Prometheus wants them.
func TestMetricsPromlint(t *testing.T) {
	text := scrapeText(t, lacpMetrics(t))
	problems, err := promlint.New(bytes.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// Label values of one meaning are spelled one way (snake_case), as
	// promtool cannot tell.
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "ulagg_") && strings.Contains(line, `reason="`) {
			v := line[strings.Index(line, `reason="`)+len(`reason="`):]
			v = v[:strings.IndexByte(v, '"')]
			if strings.ContainsAny(v, "- ") {
				t.Errorf("reason %q is not snake_case: %s", v, line)
			}
		}
	}
	// promtool itself, where it is installed, agrees.
	if _, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = bytes.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Logf("promtool not installed; the promlint library checked the same rules")
	}
}

// Reloads and ifconfig changes are counted by result, and the last
// successful reload is timed; a refused one flips
// ulagg_config_last_reload_successful to 0 until the next success.
func TestMetricsConfigChanges(t *testing.T) {
	r := failoverRig(t)
	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f := scrape(t, m)
	loaded := value(t, f, "ulagg_config_last_reload_success_timestamp_seconds")
	if now := float64(time.Now().Unix()); loaded < now-60 || loaded > now+1 {
		t.Errorf("last success after the initial load: got %v, want about %v", loaded, now)
	}
	good, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.file, []byte("[[lagg]]\nname = 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.a.ReloadFile(r.file); err == nil {
		t.Fatalf("reloading a broken file: got no error")
	}
	f = scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ulagg_config_reloads_total", []string{"result=failure"}, 1},
		{"ulagg_config_reloads_total", []string{"result=success"}, 0},
		{"ulagg_config_last_reload_successful", nil, 0},
		{"ulagg_config_last_reload_success_timestamp_seconds", nil, loaded},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("after a refused reload: %s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(r.file, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.a.ReloadFile(r.file); err != nil {
		t.Fatal(err)
	}
	kindOf := func(string) string { return "wire" }
	for _, line := range []string{"lagg0 mtu 1400", "lagg0 laggport wm0 pri 99999999"} {
		if cmd, err := config.ParseIfconfig(strings.Fields(line)); err == nil {
			_ = r.a.Ifconfig(cmd, kindOf)
		}
	}
	bad, _ := config.ParseIfconfig([]string{"lagg9", "mtu", "1400"}) // no such lagg
	if err := r.a.Ifconfig(bad, kindOf); err == nil {
		t.Fatalf("ifconfig on a lagg that does not exist: got no error")
	}
	f = scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ulagg_config_reloads_total", []string{"result=success"}, 1},
		{"ulagg_config_last_reload_successful", nil, 1},
		{"ulagg_config_ifconfig_changes_total", []string{"result=success"}, 1},
		{"ulagg_config_ifconfig_changes_total", []string{"result=failure"}, 1},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("after a reload and ifconfig: %s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(t, f, "ulagg_config_last_reload_success_timestamp_seconds"); got <= loaded {
		t.Errorf("last success after a reload: got %v, want after %v", got, loaded)
	}
}

// TestGrafanaDashboardMetricsExist: every ulagg metric the example
// dashboard queries is one the collector describes, so a rename that
// forgets the dashboard fails here.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("examples/grafana-dashboard.json is not JSON: %v", err)
	}
	// Every query string: panels' expr, the template variables' queries.
	var queries []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				queries = append(queries, v)
			}
		}
	}
	walk(dash, "")
	if len(queries) < 10 {
		t.Fatalf("found %d queries in the dashboard, want its panels' (10 or more)", len(queries))
	}

	r := failoverRig(t)
	described := map[string]bool{}
	ch := make(chan *prometheus.Desc, 1024)
	appliance.NewCollector(r.a).Describe(ch)
	close(ch)
	fqName := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`)
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			described[m[1]] = true
		}
	}
	if !described["ulagg_lagg_info"] {
		t.Fatalf("could not read the collector's metric names: %v", described)
	}
	name := regexp.MustCompile(`\bulagg_[a-z0-9_]+`)
	used := 0
	for _, q := range queries {
		for _, n := range name.FindAllString(q, -1) {
			used++
			if !described[n] {
				t.Errorf("the dashboard queries %s, which ulagg does not export: %s", n, q)
			}
		}
	}
	if used == 0 {
		t.Errorf("the dashboard queries no ulagg metric")
	}
}
