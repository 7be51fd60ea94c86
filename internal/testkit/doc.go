// Package testkit is the test support shared by the lagg, stack and
// integration tests: byte-checked TCP streams and echo checks over any
// net.Conn (gVisor gonet sockets and kernel sockets alike), ICMP echo over
// a gVisor stack, polling waits, goroutine and file descriptor leak checks,
// and a fake lagg.Clock.
//
// Helpers that can fail a test take a testing.TB and must be called from
// the test's goroutine; the rest return errors. Package-specific fixtures
// (lagg pairs, the appliance's control-socket rig, namespaces) stay in
// their packages and build on this one.
//
// Only external test packages may import testkit: it imports lagg (for
// lagg.Timer), so lagg's internal tests importing it would be a cycle.
package testkit
