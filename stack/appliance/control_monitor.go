package appliance

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// CmdMonitor streams events: Lagg ("" = every lagg), Count (0 = until the
// client closes). After a response with OK set come the events as JSON
// lines (MonitorEvent), the last of kind "end" saying why the stream
// ended: Count events sent, the client closed or half-closed the
// connection, the server stops, or the client stopped reading for
// monitorStall.
const CmdMonitor = "monitor"

// Limits of monitors: at once (each holds one of the maxControlConns
// connections, which commands need too), and how long a client may take
// no event before the stream ends.
const (
	maxMonitors  = 16
	monitorStall = time.Minute
)

// monitor serves CmdMonitor on c.
func (s *ControlServer) monitor(c net.Conn, req ControlRequest) {
	switch {
	case req.Lagg != "" && s.a.Lagg(req.Lagg) == nil && s.a.Config().Lagg(req.Lagg) == nil:
		writeResponse(c, fail(fmt.Errorf("monitor: %s: no such lagg", req.Lagg)))
		return
	case req.Count < 0:
		writeResponse(c, fail(fmt.Errorf("monitor: count %d is negative", req.Count)))
		return
	}
	release, err := s.takeStream("monitor", streamMonitor, maxMonitors)
	if err != nil {
		writeResponse(c, fail(err))
		return
	}
	defer release()
	// Subscribed before the answer: a client that acts once it has the
	// answer sees the events of what it did.
	sub := s.a.Subscribe(req.Lagg, 0)
	defer sub.Close()
	writeResponse(c, ControlResponse{OK: true})

	gone := s.clientGone(c) // ends the stream
	s.log.Info("monitor started", "lagg", req.Lagg)
	bw := bufio.NewWriter(c)
	enc := json.NewEncoder(bw)
	n := 0
	for err == nil && (req.Count == 0 || n < req.Count) {
		select {
		case ev := <-sub.C():
			_ = c.SetWriteDeadline(time.Now().Add(monitorStall))
			if err = enc.Encode(ev); err == nil && len(sub.C()) == 0 {
				err = bw.Flush()
			}
			if ev.Kind != EventLost {
				n++
			}
		case <-gone:
			err = io.EOF
		case <-s.done:
			err = net.ErrClosed
		}
	}
	why := streamEnd(err)
	if err == nil || err == io.EOF || err == net.ErrClosed {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		end := MonitorEvent{}
		end.Time, end.Kind, end.Detail = time.Now(), EventEnd, why
		if enc.Encode(end) == nil {
			_ = bw.Flush()
		}
	}
	s.log.Info("monitor ended", "lagg", req.Lagg, "events", n, "why", why)
}

// MonitorStream reads a monitor's events (StartMonitor).
type MonitorStream struct {
	c   net.Conn
	dec *json.Decoder
	end *MonitorEvent
}

// StartMonitor asks the appliance at path for its events (req.Cmd is set
// to monitor). Close ends the stream; Stop asks the appliance to end it
// and lets Next read the end.
func StartMonitor(path string, req ControlRequest) (*MonitorStream, error) {
	req.Cmd = CmdMonitor
	c, r, err := controlDo(path, req)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	if _, err := readResponse(path, r); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	return &MonitorStream{c: c, dec: json.NewDecoder(r)}, nil
}

// Next returns the next event. After the "end" event (kept by End) it
// returns io.EOF.
func (m *MonitorStream) Next() (MonitorEvent, error) {
	if m.end != nil {
		return MonitorEvent{}, io.EOF
	}
	var ev MonitorEvent
	if err := m.dec.Decode(&ev); err != nil {
		if errors.Is(err, io.EOF) {
			return ev, io.ErrUnexpectedEOF // the appliance went away without an end
		}
		return ev, err
	}
	if ev.Kind == EventEnd {
		m.end = &ev
		return MonitorEvent{}, io.EOF
	}
	return ev, nil
}

// End returns the end event, once Next has read it.
func (m *MonitorStream) End() (MonitorEvent, bool) {
	if m.end == nil {
		return MonitorEvent{}, false
	}
	return *m.end, true
}

// SetDeadline bounds the wait of Next.
func (m *MonitorStream) SetDeadline(t time.Time) error { return m.c.SetReadDeadline(t) }

// Stop half-closes the connection: the appliance ends the stream with an
// end event, which Next then reads.
func (m *MonitorStream) Stop() error {
	if uc, ok := m.c.(*net.UnixConn); ok {
		return uc.CloseWrite()
	}
	return m.c.Close()
}

// Close ends the stream.
func (m *MonitorStream) Close() error { return m.c.Close() }

// FormatEvent renders ev as `ulagg monitor` prints it, one line, e.g.
// "2026-12-01T04:05:06.123Z lagg0 failover-done veth0 -> veth1 (0.21 ms)".
func FormatEvent(ev MonitorEvent) string {
	var b strings.Builder
	b.WriteString(ev.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	if ev.Lagg != "" {
		b.WriteString(" " + ev.Lagg)
	}
	b.WriteString(" " + ev.Kind)
	switch {
	case ev.Kind == EventLost:
		fmt.Fprintf(&b, " %d events (the monitor did not keep up)", ev.Lost)
	case ev.From != "" || ev.To != "":
		fmt.Fprintf(&b, " %s -> %s", orNone(ev.From), orNone(ev.To))
	case ev.Port != "":
		b.WriteString(" " + ev.Port)
	}
	if ev.Up != nil {
		if *ev.Up {
			b.WriteString(" up")
		} else {
			b.WriteString(" down")
		}
	}
	if ev.DurationMs != nil {
		fmt.Fprintf(&b, " (%s)", fmtMillis(*ev.DurationMs))
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, " (%s)", ev.Reason)
	}
	if ev.Detail != "" {
		if len(ev.Changes) > 0 {
			fmt.Fprintf(&b, " by %s", ev.Detail)
		} else {
			b.WriteString(" " + ev.Detail)
		}
	}
	if len(ev.Changes) > 0 {
		texts := make([]string, len(ev.Changes))
		for i, c := range ev.Changes {
			texts[i] = c.Text
		}
		b.WriteString(": " + strings.Join(texts, "; "))
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
