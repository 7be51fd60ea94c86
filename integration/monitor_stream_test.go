package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ulagg/ulagg/stack/appliance"
	"github.com/ulagg/ulagg/stack/appliance/schema"
)

// monProc is a running `ulagg monitor`, its lines read as they come.
type monProc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
	seen  []string
}

// startMonitorProc runs `ulagg monitor -s SOCK ARGS...` (in the test's own
// namespace: the socket is a file); it is killed when the test ends.
func startMonitorProc(t *testing.T, p *ifcProc, args ...string) *monProc {
	t.Helper()
	m := &monProc{lines: make(chan string, 1024), done: make(chan error, 1)}
	m.cmd = exec.Command(p.bin, append([]string{"monitor", "-s", p.sock}, args...)...)
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = os.Stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.lines <- sc.Text()
		}
		close(m.lines)
		m.done <- m.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		for range m.lines {
		}
	})
	return m
}

// next returns the next line that match accepts, within timeout.
func (m *monProc) next(t *testing.T, what string, timeout time.Duration, match func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-m.lines:
			if !ok {
				t.Fatalf("waiting for %s: ulagg monitor ended; lines:\n%s", what, strings.Join(m.seen, "\n"))
			}
			m.seen = append(m.seen, l)
			if match(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %s within %v; lines:\n%s", what, timeout, strings.Join(m.seen, "\n"))
		}
	}
}

// TestMonitorStream runs `ulagg monitor --json` against the man page's
// failover lagg: pulling the transmitting port's cable (the far end of
// its veth goes down) shows the link event, the failover to the other
// port and its duration, each line valid against the events schema;
// Ctrl-C ends the stream with its end line and exit status 0. The text
// form shows the link coming back.
func TestMonitorStream(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	ifcManPageFailover(t, p, wm0, wm1)

	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, f := range schema.Files {
		data, err := schema.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("https://github.com/ulagg/ulagg/stack/appliance/schema/"+f, doc); err != nil {
			t.Fatal(err)
		}
	}
	sch, err := c.Compile("https://github.com/ulagg/ulagg/stack/appliance/schema/events.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var evs []appliance.MonitorEvent
	jsonEvent := func(kind, port string) func(string) bool {
		return func(l string) bool {
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(l))
			if err != nil {
				t.Fatalf("not JSON: %q: %v", l, err)
			}
			if err := sch.Validate(v); err != nil {
				t.Errorf("line %q does not match the events schema: %v", l, err)
			}
			var ev appliance.MonitorEvent
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
			return ev.Kind == kind && (port == "" || ev.Port == port)
		}
	}

	m := startMonitorProc(t, p, "--json", "lagg0")
	// A change the monitor reports says that it listens.
	waitMonitorListening(t, p, m, wm1, jsonEvent(appliance.EventConfigApplied, ""))
	s := ifcStartStream(t, tp, 13)
	s.progress(t, 256<<10, "the stream through "+wm0)
	pulled := time.Now()
	setLink(t, tp.host, tp.peers[0], "down")
	m.next(t, "link "+wm0+" down", 10*time.Second, jsonEvent("link", wm0))
	down := evs[len(evs)-1]
	if down.Up == nil || *down.Up || down.Reason != "carrier" || down.Lagg != "lagg0" {
		t.Errorf("link event: got %+v", down)
	}
	m.next(t, "failover", 10*time.Second, jsonEvent("failover", ""))
	if fo := evs[len(evs)-1]; fo.From != wm0 || fo.To != wm1 {
		t.Errorf("failover: got %+v, want %s -> %s", fo, wm0, wm1)
	}
	m.next(t, "failover-done", 10*time.Second, jsonEvent("failover-done", ""))
	done := evs[len(evs)-1]
	if done.DurationMs == nil || done.From != wm0 || done.To != wm1 {
		t.Errorf("failover-done: got %+v", done)
	} else {
		t.Logf("measure: link event to failover-done as the monitor saw it: %s; failover took %.3f ms by the lagg's clock; cable pulled to the event read: %v",
			done.Time.Sub(down.Time), *done.DurationMs, time.Since(pulled).Round(time.Millisecond))
	}
	s.progress(t, 256<<10, "the stream through "+wm1)

	// Ctrl-C: the monitor half-closes, the appliance sends the end.
	if err := m.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	m.next(t, "the end line", 10*time.Second, jsonEvent(appliance.EventEnd, ""))
	if end := evs[len(evs)-1]; end.Detail != "client closed" {
		t.Errorf("end: got %+v, want client closed", end)
	}
	for range m.lines {
	}
	if err := <-m.done; err != nil {
		t.Errorf("ulagg monitor after Ctrl-C: %v, want exit 0", err)
	}

	// The text form.
	tm := startMonitorProc(t, p, "lagg0")
	waitMonitorListening(t, p, tm, wm1, func(l string) bool { return strings.Contains(l, " lagg0 config-applied by ifconfig ") })
	setLink(t, tp.host, tp.peers[0], "up")
	tm.next(t, "link up in text", 10*time.Second, func(l string) bool { return strings.Contains(l, " lagg0 link "+wm0+" up (carrier)") })
	tm.next(t, "failover back in text", 10*time.Second, func(l string) bool { return strings.Contains(l, " lagg0 failover "+wm1+" -> "+wm0) })
	if err := tm.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	tm.next(t, "the end line in text", 10*time.Second, func(l string) bool { return strings.HasSuffix(l, " end client closed") })
	s.finish(t)
	p.stop(t)
}

// waitMonitorListening changes the priority of port until the monitor
// reports a line that match accepts: then it is subscribed.
func waitMonitorListening(t *testing.T, p *ifcProc, m *monProc, port string, match func(string) bool) {
	t.Helper()
	for i := range 50 {
		p.mustIfconfig(t, fmt.Sprintf("lagg0 laggportpri %s %d", port, 2001+i))
		deadline := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case l, ok := <-m.lines:
				if !ok {
					t.Fatalf("ulagg monitor ended at start; lines:\n%s", strings.Join(m.seen, "\n"))
				}
				m.seen = append(m.seen, l)
				if match(l) {
					return
				}
			case <-deadline:
				break drain
			}
		}
	}
	t.Fatalf("ulagg monitor reported no change; lines:\n%s", strings.Join(m.seen, "\n"))
}
