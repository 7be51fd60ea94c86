// Package lacp is a deterministic IEEE 802.1AX (LACP version 1) engine for
// one lagg: no goroutines, no clock, no I/O. The owner serialises calls,
// passes the time into every call, feeds received slow-protocol frames and
// link changes in, sends the frames handed to Output, wakes the engine at
// NextDeadline with Advance, and rebuilds its data path from Status when
// Generation changes.
//
// # Standard (802.1AX-2014, clause 6)
//
//   - LACPDU and Marker PDU formats; the Marker responder.
//   - Receive machine: CURRENT, EXPIRED, DEFAULTED, PORT_DISABLED. The
//     current_while timer follows our own Timeout bit (3 s short, 90 s
//     long); EXPIRED asks the partner for short timeouts and waits 3 s more.
//     update_Selected, update_NTT, recordPDU (including the Sync rule for
//     individual partners) and port_moved.
//   - Periodic machine: 1 s or 30 s chosen by the partner's Timeout bit;
//     none when both sides are passive.
//   - Transmit machine: NTT is sent in the same call that set it, at most
//     3 LACPDUs per second per port (excess waits, coalesced).
//   - Slow Protocols transmit limit (IEEE 802.3 Annex 57A): at most 10
//     frames per second per port, LACPDUs and Marker Responses together.
//     Marker Responses wait only for that limit (up to 4 queued, more are
//     dropped and counted); a pending LACPDU goes first.
//   - Use of system and port priorities (6.6.1, 6.7.1): within an
//     aggregator, ports are ordered by the Port Identifiers (port
//     priority, then port number) of the system with the better System
//     Identifier (system priority, then MAC) — ours, or the partner's when
//     its identifier is lower — with the faster link between the two. The
//     first MaxPorts are SELECTED, the rest STANDBY, so two systems with max
//     ports below the link count choose the same links.
//   - Mux machine with independent collecting and distributing.
//   - Actor and partner churn detection (60 s).
//
// # From NetBSD lagg(4) (if_lagg_lacp.c)
//
//   - Aggregators are keyed by the partner's system priority, system ID and
//     key (our key is the same on all ports). With MultiSpeed off, ports
//     whose speed differs from the first port's are STANDBY.
//   - One active aggregator carries traffic. Ports of other aggregators
//     stay in WAITING, out of sync, so their partner does not send to them.
//   - DEFAULTED ports are never selected. Our own PDUs (same system ID and
//     priority) are dropped and counted.
//
// # From Linux bonding (ad_select), not NetBSD
//
//   - Which aggregator is active follows Config.Select. SelectStable (the
//     default) keeps the active aggregator while it has a selected port,
//     whatever appears on other links; only then is another chosen, as
//     SelectBandwidth does. SelectBandwidth chooses the highest total speed
//     of selected ports, SelectCount the most selected ports, re-evaluated
//     at every change. Always: an aggregate beats an individual link, ties
//     keep the active aggregator, then the lowest partner system priority
//     (NetBSD's rule, which alone let one rogue link announcing priority 1
//     take the lagg from a working aggregate). Ports that see more than one
//     partner system (or key) raise an alarm: Status.PartnerMismatch.
//
// # Deliberate differences
//
//   - NetBSD times its periodic transmissions by the actor's timeout bit
//     and never sets that bit; here the partner's bit rules (fast partners
//     hear from us every second) and FastRate sets ours.
//   - Timers are exact, not 1 s ticks.
//   - Aggregate wait: 802.1AX holds a port in WAITING for 2 s so ports that
//     come up together choose one aggregator. Here an aggregator is a pure
//     function of the partner's identity, so waiting cannot change who
//     aggregates with whom. DefaultConfig therefore attaches at once (like
//     Open vSwitch), which negotiates in well under a second. A positive
//     AggregateWait restores the standard's wait but ends it early once no
//     port with link up is still waiting for its first LACPDU; ports that
//     came up together then need about 1 s, as the LACPDUs sent while
//     waiting use up the 3 per second budget.
//   - Versions above 1 are accepted (802.1AX forward compatibility): the
//     version 1 TLVs are read at their fixed offsets, later TLVs must chain
//     correctly to the Terminator and are ignored. Version 0 is malformed.
//     The 50 reserved octets after the Terminator may be absent.
//   - Added (not in NetBSD): passive mode, system priority, key, fast rate,
//     MinPorts, Fallback, churn detection. Below MinPorts the ports keep
//     their LACP state; Status.Up is false and the lagg should stop
//     transmitting. Fallback: when no port has a partner or may still get
//     one (every port with link up is DEFAULTED), every port with link up
//     collects and may distribute (PortStatus.Fallback); the owner
//     transmits on the one where the partner's traffic arrives, on the best
//     one by priority then ID (FallbackPort) until any has. The first
//     LACPDU on any port ends it.
//   - Looped ports: a port that receives our own LACPDUs (cabled to another
//     port of ours, or reflected) is looped (PortStatus.Looped) until its
//     link goes down or 90 s pass without one. It never falls back and
//     does not hold fallback up.
//   - A port that is merely down rests in NO_CHURN instead of running its
//     churn timers.
//   - NetBSD's Marker-based distribution suppression is not implemented.
package lacp
