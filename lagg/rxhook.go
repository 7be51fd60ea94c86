package lagg

// noteRx tells the transmitter which port a data frame came in on. The
// lacp protocol's fallback transmitter (fallbackTx, proto_lacp.go) sends
// where the partner's traffic arrives; every other transmitter ignores it.
//
// port.DeliverNetworkPacket calls it, with the snapshot it loaded, for
// every untagged frame it hands to the stack.
//
// It neither locks nor allocates: a type check, and in fallback one atomic
// load and, when the port changed, one atomic store.
func noteRx(s *snapshot, p *port) {
	if t, ok := s.dist.tx.(*fallbackTx); ok {
		t.heard(p)
	}
}
