package config_test

// The port kinds a configuration may name are those registered with linkep:
// the host kinds, and the in-memory wire that test binaries add.
import (
	_ "github.com/ulagg/ulagg/linkep/host"
	_ "github.com/ulagg/ulagg/linkep/linkeptest"
)
