package appliance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// captureToFile runs a capture through the socket and writes the stream
// to a pcap file, as `ulagg capture -w FILE` does, returning the path.
func captureToFile(t *testing.T, r *ctlRig, req appliance.ControlRequest) string {
	t.Helper()
	stream, err := appliance.ControlCapture(r.sock, req)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	defer stream.Close()
	in, err := pcapgo.NewReader(stream)
	if err != nil {
		t.Fatalf("reading the pcap stream header: %v", err)
	}
	path := filepath.Join(t.TempDir(), "lagg0.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := pcapgo.NewWriter(f)
	if err := out.WriteFileHeader(in.Snaplen(), in.LinkType()); err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := in.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the pcap stream: %v", err)
		}
		if err := out.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// readPcap returns the frames of a pcap file.
func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if got := r.LinkType(); got != layers.LinkTypeEthernet {
		t.Errorf("link type: got %v, want Ethernet", got)
	}
	var frames [][]byte
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return frames
		}
		if err != nil {
			t.Fatalf("%s after %d frames: %v", path, len(frames), err)
		}
		if ci.CaptureLength != len(data) || ci.Length < ci.CaptureLength || ci.Timestamp.IsZero() {
			t.Errorf("frame %d: capture info %+v for %d bytes", len(frames), ci, len(data))
		}
		frames = append(frames, data)
	}
}

// TestCaptureBothDirections captures a TCP stream on the lagg and checks
// that the file holds frames the lagg sent and frames it received.
func TestCaptureBothDirections(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	tr.WaitMore(t, 16<<10, 30*time.Second)
	const n = 50
	path := captureToFile(t, r, appliance.ControlRequest{Lagg: "lagg0", Count: n})
	tr.Wait(t, time.Minute)
	frames := readPcap(t, path)
	if len(frames) != n {
		t.Fatalf("got %d frames, want %d", len(frames), n)
	}
	laggMAC := []byte{2, 0, 0, 0, 0x0a, 1}
	peerMAC := []byte(r.pl.LinkAddress())
	var out, in int
	for i, f := range frames {
		if len(f) < 14 {
			t.Fatalf("frame %d: %d bytes, shorter than an Ethernet header", i, len(f))
		}
		switch src, dst := f[6:12], f[0:6]; {
		case bytes.Equal(src, laggMAC) && bytes.Equal(dst, peerMAC):
			out++
		case bytes.Equal(src, peerMAC) && bytes.Equal(dst, laggMAC):
			in++
		}
	}
	if out == 0 || in == 0 {
		t.Errorf("got %d frames out and %d in, want both directions", out, in)
	}
	if out+in != n {
		t.Errorf("%d of %d frames are neither lagg to peer nor peer to lagg", n-out-in, n)
	}
}

// TestCaptureOnePortAndStop captures on one port until the client closes
// the stream, and checks the refusals.
func TestCaptureOnePortAndStop(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	stream, err := appliance.ControlCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0", Port: "wm0"})
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	in, err := pcapgo.NewReader(stream)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, _, err := in.ReadPacketData(); err != nil {
			t.Fatalf("frame %d on wm0: %v", i, err)
		}
	}
	stream.Close() // Ctrl-C
	testkit.NoGoroutines(t, 2*time.Second, "(*ControlServer).capture")
	tr.Wait(t, time.Minute)

	for _, c := range []struct {
		req  appliance.ControlRequest
		want string
	}{
		{appliance.ControlRequest{Lagg: "lagg0", Port: "wm9"}, "capture: wm9 is not a port of lagg0"},
		{appliance.ControlRequest{Lagg: "lagg3"}, "capture: lagg3: no such lagg"},
		{appliance.ControlRequest{}, "capture: which lagg?"},
		{appliance.ControlRequest{Lagg: "lagg0", Count: -1}, "capture: count -1 is negative"},
	} {
		_, err := appliance.ControlCapture(r.sock, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("capture %+v: got %v, want an error containing %q", c.req, err, c.want)
		}
	}
}

// TestCaptureEndsWithServer checks that closing the control server ends a
// capture that sees no traffic.
func TestCaptureEndsWithServer(t *testing.T) {
	r := newCtlRig(t, "[[lagg]]\nname = \"lagg0\"\n", "failover")
	stream, err := appliance.ControlCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0"})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := pcapgo.NewReader(stream); err != nil {
		t.Fatalf("pcap header: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, stream)
		done <- err
	}()
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the capture stream did not end when the server closed")
	}
}

// TestCaptureLimit: four captures run at once; a fifth is refused until
// one of them ends.
func TestCaptureLimit(t *testing.T) {
	r := failoverRig(t)
	var streams []*appliance.CaptureStream
	for i := range 4 {
		s, err := appliance.StartCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0"})
		if err != nil {
			t.Fatalf("capture %d: %v", i+1, err)
		}
		defer s.Close()
		streams = append(streams, s)
	}
	_, err := appliance.StartCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0"})
	if want := "capture: 4 captures are running, the most ulagg serves at once"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a fifth capture: %v, want %q", err, want)
	}
	streams[0].Close()
	testkit.WaitFor(t, 5*time.Second, "a fifth capture once one ended", func() bool {
		s, err := appliance.StartCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0"})
		if err != nil {
			return false
		}
		s.Close()
		return true
	})
}

// TestCaptureDropsReported: a client that stops reading while a stream
// crosses the lagg loses frames beyond its queue; when it stops the
// capture (half-closing, as Ctrl-C in `ulagg capture` does) it reads the
// rest and the end record, which counts them.
func TestCaptureDropsReported(t *testing.T) {
	r := failoverRig(t)
	s, err := appliance.StartCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := pcapgo.NewReader(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.GonetDialer(r.peer, netip.AddrPortFrom(netip.MustParseAddr(ctlAddr), 7))(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr := testkit.StartEcho(t, c, testkit.TransferOptions{Name: "fast stream", Seed: 5, Size: -1, Chunk: 64 << 10})
	time.Sleep(2 * time.Second) // not reading
	tr.Wait(t, time.Minute)
	if err := s.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, _, err := in.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", n, err)
		}
		n++
	}
	sum, ok := s.Summary()
	t.Logf("measure: capture not read for 2 s: %d frames written, %d dropped (%s)", sum.Frames, sum.Dropped, sum.End)
	if !ok || sum.Frames != n || sum.Dropped == 0 || sum.End != "client closed" {
		t.Fatalf("summary %+v (%t), read %d frames; want the frames read, some dropped, client closed", sum, ok, n)
	}
	// The drops show in status -v, in JSON with -v, and in Drops (metrics).
	if _, got := r.a.Drops(); got != sum.Dropped {
		t.Errorf("appliance capture drops: got %d, want %d", got, sum.Dropped)
	}
	if out := r.status("lagg0", true); !strings.Contains(out, fmt.Sprintf("capture: drops: %d", sum.Dropped)) {
		t.Errorf("status -v has no capture drops line:\n%s", out)
	}
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, JSON: true, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var js []appliance.LaggJSON
	if err := json.Unmarshal([]byte(resp.Output), &js); err != nil || len(js) == 0 || js[0].CaptureDrops != sum.Dropped {
		t.Errorf("status JSON -v capture_drops: got %+v (%v), want %d", js, err, sum.Dropped)
	}
}

// TestCaptureSummaryCount: a capture of N frames ends with an end record
// saying so, which the stream does not pass on as a frame.
func TestCaptureSummaryCount(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	s, err := appliance.StartCapture(r.sock, appliance.ControlRequest{Lagg: "lagg0", Count: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := pcapgo.NewReader(s)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := in.ReadPacketData(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	tr.Wait(t, time.Minute)
	sum, ok := s.Summary()
	if n != 20 || !ok || sum != (appliance.CaptureSummary{Frames: 20, End: "count reached"}) {
		t.Fatalf("read %d frames, summary %+v (%t)", n, sum, ok)
	}
}
