// Package appliance is the runtime of the standalone ulagg appliance: one
// gVisor stack (built with package stack) with a NIC per configured lagg,
// its addresses and routes, and the built-in TCP/UDP services, driven by a
// config.Config.
//
// An Appliance is the one management path. The initial configuration (New),
// a reload (Reload, ReloadConfig, ReloadFile), the control socket
// (ListenControl: ifconfig, status, save, reload and capture requests, with
// ControlCall and ControlCapture as the client side) and direct calls
// (CreateLagg, ApplyLagg, DestroyLagg, Ifconfig) all go through its
// methods, which are serialised, so changes never interleave. A
// configuration that does not validate as a whole is refused before
// anything changes; a lagg change that fails part-way is rolled back.
//
// Around it: FormatStatus and StatusJSON render the status as NetBSD's
// ifconfig does and as JSON, and ListenMetrics (NewCollector) exports every
// lagg's and port's state and counters to Prometheus.
//
// Routers that embed ulagg in their own stack do not need this package:
// package stack has the embedder API without its dependencies.
package appliance
