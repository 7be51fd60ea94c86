package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"

	"github.com/ulagg/ulagg/config"
)

// iperf3 measures lagg0 as an operator would: the stock iperf3 client in
// the host namespace against the appliance's iperf3 service, the appliance
// sending (-R) over 8 streams. Without an iperf3 binary it says how to get
// one and goes on.
func (d *demo) iperf3() error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		d.say("   (apt-get install iperf3 to measure it with iperf3 -c %s as well)", demoLaggIP)
		return nil
	}
	out, err := exec.CommandContext(d.ctx, "ip", "netns", "exec", d.host, "iperf3", "-c", demoLaggIP,
		"-p", strconv.Itoa(config.DefaultIperf3Port), "-R", "-P", "8", "-t", "2", "-J").Output()
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil || r.Error != "" {
		return fmt.Errorf("iperf3 -c %s -R -P 8: %v %v %s", demoLaggIP, err, jerr, r.Error)
	}
	d.say("   iperf3 -c %s -R -P 8 -t 2 from the host: %.0f MB/s (the appliance's iperf3 service sending)",
		demoLaggIP, r.End.SumReceived.BitsPerSecond/8/1e6)
	return nil
}
