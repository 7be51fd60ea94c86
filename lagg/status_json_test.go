package lagg_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/lagg/lacp"
)

// jsonKeys returns the json keys of t's fields.
func jsonKeys(t reflect.Type) map[string]bool {
	keys := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		keys[name] = true
	}
	return keys
}

// TestStatusJSONFields: every field of Status and PortStatus names, in its
// tag, a key of the JSON type that json.Marshal prints, so a field added
// to the status cannot be left out of the JSON unnoticed.
func TestStatusJSONFields(t *testing.T) {
	for _, c := range []struct{ status, js reflect.Type }{
		{reflect.TypeFor[lagg.Status](), reflect.TypeFor[lagg.StatusJSON]()},
		{reflect.TypeFor[lagg.PortStatus](), reflect.TypeFor[lagg.PortStatusJSON]()},
	} {
		keys := jsonKeys(c.js)
		for f := range c.status.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "":
				t.Errorf("%s.%s has no json tag: give it the key it has in %s (status_json.go)", c.status.Name(), f.Name, c.js.Name())
			case name != "-" && !keys[name]:
				t.Errorf("%s.%s: key %q is not in %s: add the field there and set it in JSON()", c.status.Name(), f.Name, name, c.js.Name())
			}
		}
	}
}

// TestStatusMarshal: json.Marshal of a Go status prints MACs as strings,
// flags and LACP states as a number and names, counters in snake_case with
// drops {} rather than null.
func TestStatusMarshal(t *testing.T) {
	mac := [6]byte{0xbe, 0x63, 0x50, 1, 2, 3}
	st := lagg.Status{
		Name: "lagg0", Proto: "lacp", MAC: tcpip.LinkAddress(mac[:]), MTU: 1500, Up: true,
		Hash:         lagg.HashL2,
		LastFailover: 1500 * time.Microsecond,
		Counters:     lagg.Counters{RxFrames: 3},
		LACP: &lagg.LACPStatus{
			Actor: lacp.SystemKey{SystemPriority: 0x8000, System: mac, Key: 1}, Select: "stable",
			Aggregators: []lacp.AggregatorStatus{{ID: 1, Ports: []lacp.PortID{1}, Active: true}},
		},
		Ports: []lagg.PortStatus{{
			Name: "wm0", Flags: lagg.PortActive | lagg.PortCollecting | lagg.PortDistributing, LinkUp: true,
			MAC:  tcpip.LinkAddress(mac[:]),
			LACP: &lagg.LACPPortStatus{ID: 1, Actor: lacp.Info{System: mac, State: lacp.StateActivity | lacp.StateSync}},
		}},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		`"mac":"be:63:50:01:02:03"`,
		`"counters":{"rx_frames":3,"rx_bytes":0,"tx_frames":0,"tx_bytes":0,"drops":{},"tx_waits":0}`,
		`"flags":{"value":28,"names":["ACTIVE","COLLECTING","DISTRIBUTING"]}`,
		`"state":{"value":9,"names":["ACTIVITY","SYNC"]}`,
		`"actor":{"system_priority":32768,"system":"be:63:50:01:02:03","key":1}`,
		`"aggregators":[{"id":1,"partner":{"system_priority":0,"system":"00:00:00:00:00:00","key":0},"ports":["wm0"],"active":true}]`,
		`"last_failover_ms":1.5`,
		`"hash":"l2"`,
		`"link":"up"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("json.Marshal(Status) lacks %s:\n%s", want, got)
		}
	}
	for _, bad := range []string{"null", "RxFrames", "[190,"} {
		if strings.Contains(got, bad) {
			t.Errorf("json.Marshal(Status) has %s:\n%s", bad, got)
		}
	}
	// Without -v's detail: no port LACP block, no aggregators.
	b, _ = json.Marshal(st.JSON(false))
	if s := string(b); strings.Contains(s, "aggregators") || strings.Contains(s, `"mux"`) {
		t.Errorf("JSON(false) has verbose detail:\n%s", s)
	}
	// Flags read back.
	var back lagg.StatusJSON
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Ports[0].Flags != st.Ports[0].Flags || back.Counters.RxFrames != 3 {
		t.Errorf("round trip: flags %v counters %+v", back.Ports[0].Flags, back.Counters)
	}
}

// TestEventMarshal: events print as `ulagg monitor --json` does, kinds by
// name, also kinds this version does not know.
func TestEventMarshal(t *testing.T) {
	at := time.Date(2026, 12, 1, 4, 5, 6, 123000000, time.UTC)
	for _, c := range []struct {
		ev   lagg.Event
		want string
	}{
		{lagg.Event{Kind: lagg.EventLink, Time: at, Lagg: "lagg0", Port: "wm0"},
			`{"time":"2026-12-01T04:05:06.123Z","lagg":"lagg0","kind":"link","port":"wm0","up":false}`},
		{lagg.Event{Kind: lagg.EventFailoverDone, Time: at, Lagg: "lagg0", Port: "wm1", From: "wm0", Duration: 210 * time.Microsecond},
			`{"time":"2026-12-01T04:05:06.123Z","lagg":"lagg0","kind":"failover-done","port":"wm1","from":"wm0","to":"wm1","duration_ms":0.21}`},
		{lagg.Event{Kind: lagg.EventKind(99), Time: at, Lagg: "lagg0", Port: "wm0", Up: true, Detail: "arp reply"},
			`{"time":"2026-12-01T04:05:06.123Z","lagg":"lagg0","kind":"event(99)","port":"wm0","up":true,"detail":"arp reply"}`},
	} {
		b, err := json.Marshal(c.ev)
		if err != nil || string(b) != c.want {
			t.Errorf("json.Marshal(%v): got %s (%v), want %s", c.ev.Kind, b, err, c.want)
		}
	}
	var k lagg.EventKind
	if err := k.UnmarshalText([]byte("failover")); err != nil || k != lagg.EventFailover {
		t.Errorf("UnmarshalText(failover): got %v, %v", k, err)
	}
	if err := k.UnmarshalText([]byte("bogus")); err == nil {
		t.Errorf("UnmarshalText(bogus): no error")
	}
}
