package lagg

// ProtoNone carries no traffic either way (NetBSD's default protocol).
const ProtoNone Proto = "none"

// protoNone accepts ports, unlike NetBSD's, so a lagg can be assembled
// before it is given a protocol.
type protoNone struct{ baseProtocol }

func init() { registerProtocol(ProtoNone, 0, func() protocol { return protoNone{} }) }

func (protoNone) distribute(*protoCtx) distribution { return distribution{} }

func (protoNone) portFlags(p *port, _ *distribution) PortFlags {
	if p.usable() {
		return PortActive
	}
	return 0
}
