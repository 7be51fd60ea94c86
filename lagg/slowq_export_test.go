package lagg

import "fmt"

// SlowQueueTester fills a bare lagg's slow-protocol queues.
type SlowQueueTester struct {
	l     *Lagg
	ports []*port
}

// Push queues a frame on the port in slot, as controlInput does once the
// frame was found valid: a LACPDU, or a marker; tag tells frames apart
// (markers' tags are 100 and above).
func (q SlowQueueTester) Push(slot int, marker bool, tag byte) {
	kind := slowLACP
	if marker {
		kind = slowMarker
	}
	q.l.enqueueSlow(kind, slowFrame{port: q.ports[slot], frame: []byte{tag}})
}

// SlowServeOrder returns the order in which the control goroutine would
// serve what fill queued, as "slot:L<tag>" (LACPDU) or "slot:M<tag>".
func SlowServeOrder(fill func(SlowQueueTester)) []string {
	l := &Lagg{}
	q := SlowQueueTester{l: l}
	for i := range MaxPorts {
		q.ports = append(q.ports, &port{slot: i})
	}
	fill(q)
	var out []string
	for {
		f, ok := l.nextSlow()
		if !ok {
			return out
		}
		k := "L"
		if f.frame[0] >= 100 {
			k = "M"
		}
		out = append(out, fmt.Sprintf("%d:%s%d", f.port.slot, k, f.frame[0]))
	}
}
