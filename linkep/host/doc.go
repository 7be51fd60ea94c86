// Package host holds the port kinds on host interfaces: AF_PACKET sockets on
// existing interfaces ("afpacket") and TAP devices ("tap"), each registered
// with linkep.RegisterKind from its own file, plus what they share: the
// rtnetlink link watcher, network namespaces, MTU ownership and admin state.
//
// Import it for its side effect to make the kinds openable with linkep.Open.
package host
