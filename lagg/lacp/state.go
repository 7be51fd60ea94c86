package lacp

import (
	"strconv"
	"strings"
)

// State is the LACP port state octet carried in the Actor and Partner TLVs.
type State uint8

// State bits (IEEE 802.1AX-2014 6.4.2.3).
const (
	StateActivity     State = 0x01 // active LACP
	StateTimeout      State = 0x02 // short timeout requested
	StateAggregation  State = 0x04 // link is aggregatable
	StateSync         State = 0x08 // attached to the right aggregator
	StateCollecting   State = 0x10
	StateDistributing State = 0x20
	StateDefaulted    State = 0x40 // using administrative partner defaults
	StateExpired      State = 0x80 // partner information expired
)

var stateNames = [8]string{
	"ACTIVITY", "TIMEOUT", "AGGREGATION", "SYNC",
	"COLLECTING", "DISTRIBUTING", "DEFAULTED", "EXPIRED",
}

// String formats s like NetBSD's snprintb with LACP_STATE_BITS, e.g.
// "0x3d<ACTIVITY,AGGREGATION,SYNC,COLLECTING,DISTRIBUTING>", or "0x0".
func (s State) String() string {
	var b strings.Builder
	b.WriteString("0x")
	b.WriteString(strconv.FormatUint(uint64(s), 16))
	if s == 0 {
		return b.String()
	}
	b.WriteByte('<')
	first := true
	for i, name := range stateNames {
		if s&(1<<i) == 0 {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(name)
	}
	b.WriteByte('>')
	return b.String()
}

// Info is one side's information as carried in an Actor or Partner TLV.
type Info struct {
	SystemPriority uint16
	System         [6]byte
	Key            uint16
	PortPriority   uint16
	Port           uint16
	State          State
}

// sameIdentity reports whether a and b name the same port of the same
// system with the same key and aggregatability: the fields whose change
// makes the standard's update_Selected reset the selection.
func (a Info) sameIdentity(b Info) bool {
	return a.SystemPriority == b.SystemPriority && a.System == b.System &&
		a.Key == b.Key && a.PortPriority == b.PortPriority && a.Port == b.Port &&
		a.State&StateAggregation == b.State&StateAggregation
}
