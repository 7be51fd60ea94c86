package lagg

// none carries no traffic either way (NetBSD's default protocol). Unlike
// NetBSD it accepts ports, so a lagg can be assembled before it is given a
// protocol.
type protoNone struct{ baseProtocol }

func init() { registerProtocol("none", func() protocol { return &protoNone{} }) }

func (*protoNone) distribute([]*port) distribution { return distribution{} }

func (*protoNone) portFlags(p *port, _ *distribution) PortFlags {
	if p.active {
		return PortActive
	}
	return 0
}
