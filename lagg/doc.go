// Package lagg is NetBSD's lagg(4) as a gVisor netstack LinkEndpoint: one
// endpoint that aggregates several child endpoints (linkep.Port) under a
// protocol — none, failover, loadbalance, lacp, roundrobin or broadcast
// (Protocols lists what the build has).
//
// Use it like any LinkEndpoint: New, AddPort, then hand it to
// stack.CreateNIC. The lagg owns its ports' MAC and MTU: the lagg's are
// pushed to every port and the ports' own come back when they leave or the
// lagg is closed. Settings change with Apply (or Update), which is
// idempotent and all-or-nothing; SetEventHandler delivers link changes,
// failovers, LACP changes and ports that vanish, so an embedder never polls.
//
// # Data path and control path
//
// Every change (ports, priorities, link events, settings, LACP) runs on the
// control path under Lagg.mu and ends by building a new immutable snapshot
// (snapshot.go) of who transmits and who may receive, published through an
// atomic pointer. The per-frame paths — WritePackets through the protocol's
// transmitter, and each port's receive accept (datapath.go) — load that
// snapshot once and neither lock nor allocate, as NetBSD's pserialize/psref
// readers do. Counters on the data path are per port; a lagg's totals are
// summed when read.
//
// A protocol (proto.go, one file each) is NetBSD's lagg_proto ops table. Its
// methods run under Lagg.mu and get everything they may use — settings, MAC,
// ports, clock, a way to send a frame, arm a timer or raise an event — in a
// protoCtx; they have no pointer back to the Lagg. Its distribute returns a
// transmitter (its pr_transmit) and a receive set, which the snapshot
// publishes.
//
// # Locking
//
//   - Lagg.mu guards the fields marked +checklocks:mu and every port's
//     control fields (prio, linkUp, active, delay, attached, leaving, proto).
//     It is held for every protocol call, and while ports are told their MTU
//     and MAC.
//   - Lock order: Lagg.mu, then a port's own locks (a child's methods are
//     called with mu held; a child never calls back into the lagg
//     synchronously: its events arrive on its own goroutine).
//   - The stack calls Attach(nil) and Wait with its own lock held: they
//     therefore wait for nothing that may call into the stack. Ports are
//     detached on a goroutine that Close waits for.
//   - Stopping a port waits for its receive goroutines, which may be
//     blocked on the stack: releasePort runs without mu.
//   - The control goroutine (routineControl) serialises slow-protocol
//     frames, protocol timers and announcements; the announcer runs there
//     with no lock held. The event handler runs on a goroutine of its own
//     (routineEvents), also with no lock held.
package lagg
