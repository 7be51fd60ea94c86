package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

// iperf3Require fails (CI=true) or skips the test unless Debian's iperf3
// client is installed.
func iperf3Require(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("iperf3 not installed (CI=true: failing instead of skipping; apt-get install iperf3)")
		}
		t.Skip("iperf3 not installed (apt-get install iperf3)")
	}
}

// runIperf3 runs `iperf3 -c laggIP -J args...` in namespace ns.
func runIperf3(ns string, args ...string) (iperf3Result, error) {
	args = append([]string{"netns", "exec", ns, "iperf3", "-c", laggIP,
		"-p", strconv.Itoa(config.DefaultIperf3Port), "-J"}, args...)
	out, err := exec.Command("ip", args...).Output()
	var r iperf3Result
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return r, fmt.Errorf("%v; %v; output %q", err, jerr, out)
	}
	return r, err
}

// iperf3Result is the part of `iperf3 -J` the test reads.
type iperf3Result struct {
	Error string `json:"error"`
	End   struct {
		Streams []json.RawMessage `json:"streams"`
		SumSent struct {
			Bytes uint64 `json:"bytes"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes   uint64  `json:"bytes"`
			Seconds float64 `json:"seconds"`
		} `json:"sum_received"`
	} `json:"end"`
}

// TestIperf3Client runs Debian's iperf3 client in the host namespace
// against the appliance's iperf3 service on a 2-port loadbalance lagg:
// client→appliance, -R (appliance→client) and -P 4. Each test must end
// without error, move bytes, and the lagg's own counters must have carried
// about what iperf3 reports (frames add headers; TCP may retransmit).
//
//	go test -count=1 -v -run TestIperf3Client ./integration/ 2>&1 | grep measure:
func TestIperf3Client(t *testing.T) {
	iperf3Require(t)
	tp := newTopo(t, 2)
	ap := startAppliance(t, laggConfig("loadbalance", tp.ports...), appOptions{netns: tp.lag})
	cfg := ap.a.Config()
	cfg.Services = append(cfg.Services, config.Service{Kind: "iperf3", Port: config.DefaultIperf3Port})
	if err := ap.a.Reload(cfg); err != nil {
		t.Fatalf("adding the iperf3 service: %v", err)
	}
	for _, c := range []struct {
		name    string
		args    []string
		streams int
		reverse bool
		err     string // the error iperf3 must report, if any
	}{
		{"client sends", []string{"-t", "2"}, 1, false, ""},
		{"reverse", []string{"-t", "2", "-R"}, 1, true, ""},
		{"4 streams", []string{"-t", "2", "-P", "4"}, 4, false, ""},
		{"4 streams reverse", []string{"-t", "2", "-P", "4", "-R"}, 4, true, ""},
		{"bytes, omit, server output", []string{"-n", "200M", "-O", "1", "--get-server-output"}, 1, false, ""},
		{"udp refused", []string{"-t", "1", "-u"}, 0, false, "not implemented"},
		{"bidir refused", []string{"-t", "1", "--bidir"}, 0, false, "not implemented"},
		{"too many streams", []string{"-t", "1", "-P", "32"}, 0, false, "not implemented"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := ap.l.Status().Counters
			r, err := runIperf3(tp.host, c.args...)
			if c.err != "" {
				if !strings.Contains(r.Error, c.err) {
					t.Fatalf("iperf3 %v: got error %q (%v), want one containing %q", c.args, r.Error, err, c.err)
				}
				return
			}
			if err != nil || r.Error != "" {
				t.Fatalf("iperf3 %v: %v: %s", c.args, err, r.Error)
			}
			after := ap.l.Status().Counters
			sent, recv := r.End.SumSent.Bytes, r.End.SumReceived.Bytes
			if len(r.End.Streams) != c.streams || sent == 0 || recv == 0 {
				t.Fatalf("iperf3 %v: %d streams, sent %d, received %d: want %d streams and bytes both ways",
					c.args, len(r.End.Streams), sent, recv, c.streams)
			}
			// The ulagg side: what the lagg received (client sends) or sent
			// (-R) must be at least what the receiver counted and not
			// much more than the sender counted.
			lagg := after.RxBytes - before.RxBytes
			if c.reverse {
				lagg = after.TxBytes - before.TxBytes
			}
			t.Logf("measure: iperf3 %v over 2-port loadbalance: %.0f MB/s; sent %d, received %d, lagg carried %d bytes",
				c.args, float64(recv)/r.End.SumReceived.Seconds/1e6, sent, recv, lagg)
			// -O: iperf3 leaves the first second out; the lagg does not.
			omitted := slices.Contains(c.args, "-O")
			if lagg < recv || !omitted && float64(lagg) > 1.25*float64(sent) {
				t.Errorf("iperf3 %v: lagg carried %d bytes; iperf3 sent %d, received %d", c.args, lagg, sent, recv)
			}
		})
	}
	// One test at a time: a second client is told the server is busy,
	// and the first one's test still succeeds.
	first := make(chan error, 1)
	go func() {
		r, err := runIperf3(tp.host, "-t", "3")
		if err == nil && r.Error != "" {
			err = errors.New(r.Error)
		}
		first <- err
	}()
	time.Sleep(time.Second)
	if r, _ := runIperf3(tp.host, "-t", "1"); !strings.Contains(r.Error, "busy") {
		t.Errorf("a second client during a test: got error %q, want the server busy", r.Error)
	}
	if err := <-first; err != nil {
		t.Errorf("the first client, while a second was turned away: %v", err)
	}
	st := ap.a.ServiceStats(config.Service{Kind: "iperf3", Port: config.DefaultIperf3Port})
	if st == nil || st.Malformed.Load() != 0 || st.TimedOut.Load() != 0 {
		t.Errorf("iperf3 service stats %+v: want it running, nothing malformed or timed out", st)
	}
}
