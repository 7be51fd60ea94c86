package lagg

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// DropReason says why a frame was dropped.
type DropReason int

// Drop reasons, counted per port and per lagg.
const (
	DropNoPort           DropReason = iota // transmit with no port able to send
	DropInactivePort                       // received on a port that may not receive now
	DropTxError                            // the port's WritePackets failed
	DropNotAttached                        // received while no stack is attached
	DropControlQueue                       // slow-protocols frame with its port's control queue full (slowq.go)
	DropControlFrame                       // slow-protocols frame the protocol does not use
	DropControlMalformed                   // slow-protocols frame that is no valid LACPDU or Marker PDU, or an illegal subtype
	DropVLAN                               // 802.1Q/802.1ad-tagged frame: no VLAN is configured on the lagg
	DropChecksum                           // IPv4 header, TCP or UDP checksum wrong (verified in software)
	DropForeignMAC                         // unicast for a port's own MAC that is no link monitor reply (monitor.go)
	DropTxQueueFull                        // transmit with the port's backpressure queue full (backpressure.go)
	numDropReasons
)

var dropNames = [numDropReasons]string{"no-port", "inactive-port", "tx-error", "not-attached", "control-queue-full", "control-frame",
	"control-malformed", "vlan", "checksum", "foreign-mac", "tx-queue-full"}

func (r DropReason) String() string {
	if r >= 0 && r < numDropReasons {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", int(r))
}

// counters are updated on the data path with atomics only, and only the
// port's: a lagg's totals are summed when read, so no counter is shared by
// every port and CPU.
type counters struct {
	rxFrames, rxBytes, txFrames, txBytes atomic.Uint64
	drops                                [numDropReasons]atomic.Uint64
	// txWaits counts pauses for a port whose queue was full
	// (backpressure.go).
	txWaits atomic.Uint64
}

func (c *counters) rx(bytes int) {
	c.rxFrames.Add(1)
	c.rxBytes.Add(uint64(bytes))
}

func (c *counters) tx(frames, bytes int) {
	c.txFrames.Add(uint64(frames))
	c.txBytes.Add(uint64(bytes))
}

func (c *counters) drop(r DropReason, n int) { c.drops[r].Add(uint64(n)) }

// add adds o's counts to c: a released port's go to its lagg's own, so the
// lagg's totals (its own plus its ports', summed when read) never go back.
func (c *counters) add(o *counters) {
	c.rxFrames.Add(o.rxFrames.Load())
	c.rxBytes.Add(o.rxBytes.Load())
	c.txFrames.Add(o.txFrames.Load())
	c.txBytes.Add(o.txBytes.Load())
	c.txWaits.Add(o.txWaits.Load())
	for i := range c.drops {
		c.drops[i].Add(o.drops[i].Load())
	}
}

// Counters is a point-in-time copy of frame and byte counters.
type Counters struct {
	RxFrames, RxBytes, TxFrames, TxBytes uint64
	Drops                                map[string]uint64 // by DropReason name; zero reasons omitted
	// TxWaits counts the pauses for a port whose queue was full: frames
	// delayed, not dropped (backpressure.go).
	TxWaits uint64
}

func (c *counters) snapshot() Counters {
	s := Counters{
		RxFrames: c.rxFrames.Load(), RxBytes: c.rxBytes.Load(),
		TxFrames: c.txFrames.Load(), TxBytes: c.txBytes.Load(),
		TxWaits: c.txWaits.Load(),
	}
	for i := range c.drops {
		if n := c.drops[i].Load(); n != 0 {
			if s.Drops == nil {
				s.Drops = make(map[string]uint64)
			}
			s.Drops[DropReason(i).String()] = n
		}
	}
	return s
}

// merge adds o to c.
func (c *Counters) merge(o Counters) {
	c.RxFrames += o.RxFrames
	c.RxBytes += o.RxBytes
	c.TxFrames += o.TxFrames
	c.TxBytes += o.TxBytes
	c.TxWaits += o.TxWaits
	for k, v := range o.Drops {
		if c.Drops == nil {
			c.Drops = make(map[string]uint64)
		}
		c.Drops[k] += v
	}
}

// Drop returns the count for one reason.
func (c Counters) Drop(r DropReason) uint64 { return c.Drops[r.String()] }

// PortFlags are NetBSD's per-port flags, as ifconfig prints them.
type PortFlags uint32

// Port flags (LAGG_PORT_BITS).
const (
	PortMaster       PortFlags = 0x1
	PortStack        PortFlags = 0x2
	PortActive       PortFlags = 0x4
	PortCollecting   PortFlags = 0x8
	PortDistributing PortFlags = 0x10
	PortStandby      PortFlags = 0x20
)

var portFlagNames = []string{"MASTER", "STACK", "ACTIVE", "COLLECTING", "DISTRIBUTING", "STANDBY"}

// String formats flags as NetBSD's ifconfig does: "0x1c<ACTIVE,COLLECTING,DISTRIBUTING>".
func (f PortFlags) String() string {
	if f == 0 {
		return "0x0"
	}
	var names []string
	for i, n := range portFlagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return fmt.Sprintf("0x%x<%s>", uint32(f), strings.Join(names, ","))
}
