//go:build race

package host_test

// afRace: the race detector makes sync.Pool drop items at random, so pooled
// buffers allocate and allocation counts say nothing.
const afRace = true
