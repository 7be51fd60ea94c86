//go:build !race

package host_test

const afRace = false
