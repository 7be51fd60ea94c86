package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultSocket is the control socket path used when [control] socket is absent.
const DefaultSocket = "/run/ulagg/ulagg.sock"

// DefaultPriority is the port priority used when priority is absent
// (NetBSD LAGG_PORT_PRIO).
const DefaultPriority = 32768

// Protocol names accepted in lagg.proto.
const (
	ProtoNone        = "none"
	ProtoFailover    = "failover"
	ProtoLoadBalance = "loadbalance"
	ProtoLACP        = "lacp"
	ProtoRoundRobin  = "roundrobin"
	ProtoBroadcast   = "broadcast"
)

// Limits shared by the decoder and Validate.
const (
	MaxPorts     = 32 // ports per lagg (NetBSD LAGG_MAX_PORTS)
	MaxLACPPorts = 16 // LACP selected ports (NetBSD LACP_MAX_PORTS)
	MaxDelay     = 600 * time.Second
)

// Config is a whole appliance configuration.
type Config struct {
	Control  Control
	Metrics  Metrics
	Laggs    []Lagg
	Services []Service
}

// Control configures the control socket used by the CLI.
type Control struct {
	Socket string
}

// Metrics configures the Prometheus listener; an empty Listen turns it off.
type Metrics struct {
	Listen string
}

// Lagg is one aggregated interface. Settings that belong to a protocol the
// lagg is not running (LACP on a failover lagg) are kept so that a later
// protocol switch picks them up.
type Lagg struct {
	Name      string
	Proto     string
	Addresses []netip.Prefix
	MTU       uint32           // 0 = take the first port's MTU
	MAC       net.HardwareAddr // nil = take the first port's MAC
	Hash      []string         // subset of "l2", "l3", "l4"
	UpDelay   time.Duration
	DownDelay time.Duration
	Down      bool // administratively down (ifconfig lagg0 down): the NIC is disabled
	Failover  Failover
	LACP      LACP
	// RoundRobin holds roundrobin's options.
	RoundRobin RoundRobin
	Ports      []Port
}

// RoundRobin holds roundrobin protocol options.
type RoundRobin struct {
	// Stride is how many consecutive frames one port sends before the next
	// takes over (FreeBSD's rr_limit); 1 = every frame on the next port.
	Stride int
}

// MaxStride bounds RoundRobin.Stride.
const MaxStride = 65535

// Failover holds failover protocol options.
type Failover struct {
	RxAll bool
}

// LACP holds 802.1AX options.
type LACP struct {
	MultiSpeed     bool
	MaxPorts       int
	Rate           string // "fast" or "slow"
	Mode           string // "active" or "passive"
	SystemPriority uint16
	Key            uint16 // 0 = derive automatically
	MinPorts       int
	Fallback       bool
}

// Port is one member interface of a lagg.
type Port struct {
	Name      string
	Kind      string // a registered port kind (linkep.Kinds): "afpacket" or "tap"
	Priority  uint16 // lower is preferred
	SpeedMbps uint64 // 0 = ask the interface
}

// Service is a built-in responder on the lagg addresses.
type Service struct {
	Kind string // "tcp-echo", "udp-echo", "tcp-discard" or "http-status"
	Port uint16
	Lagg string // "" = every lagg
}

// Default returns an empty configuration with defaults applied.
func Default() *Config {
	return &Config{Control: Control{Socket: DefaultSocket}}
}

// defaultHash is the hash layer list used when hash is absent.
var defaultHash = []string{"l2", "l3", "l4"}

// NewLagg returns a lagg called name with every default applied; it equals
// what Parse produces for a [[lagg]] table holding only that name.
func NewLagg(name string) Lagg {
	return Lagg{
		Name:       name,
		Proto:      ProtoNone,
		Hash:       slices.Clone(defaultHash),
		Failover:   Failover{RxAll: true},
		RoundRobin: RoundRobin{Stride: 1},
		LACP: LACP{
			MultiSpeed:     true,
			MaxPorts:       MaxLACPPorts,
			Rate:           "slow",
			Mode:           "active",
			SystemPriority: 32768,
			MinPorts:       1,
		},
	}
}

// newPort returns a port with defaults applied.
func newPort(name string) Port {
	return Port{Name: name, Kind: "afpacket", Priority: DefaultPriority}
}

// Lagg returns the lagg called name, or nil. The pointer aliases c.Laggs.
func (c *Config) Lagg(name string) *Lagg {
	if c == nil {
		return nil
	}
	for i := range c.Laggs {
		if c.Laggs[i].Name == name {
			return &c.Laggs[i]
		}
	}
	return nil
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := *c
	n.Services = slices.Clone(c.Services)
	if c.Laggs != nil {
		n.Laggs = make([]Lagg, len(c.Laggs))
		for i := range c.Laggs {
			n.Laggs[i] = c.Laggs[i].clone()
		}
	}
	return &n
}

func (l *Lagg) clone() Lagg {
	n := *l
	n.Addresses = slices.Clone(l.Addresses)
	n.MAC = slices.Clone(l.MAC)
	n.Hash = slices.Clone(l.Hash)
	n.Ports = slices.Clone(l.Ports)
	return n
}

// Load reads and parses the file at path; messages name path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a TOML configuration. name is used in error
// messages only. On failure the error joins one *Error per problem, ordered
// by line.
func Parse(name string, data []byte) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(name, err)
	}
	d := &decoder{}
	c := d.config(raw)
	errs := d.errs
	for _, e := range c.validate() {
		if !d.reported(e.Key) {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		return c, nil
	}
	lines := locate(data)
	for _, e := range errs {
		e.File = name
		e.Line = lines.line(e.Key)
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	return nil, joinErrors(errs)
}

// syntaxError turns a TOML library error into an *Error with the line.
func syntaxError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: name, Line: pe.Position.Line, Msg: "invalid TOML: " + oneLine(pe.Message), Err: err}
	}
	return &Error{File: name, Msg: "invalid TOML: " + oneLine(err.Error()), Err: err}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}
