package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultSocket is the control socket path used when [control] socket is absent.
const DefaultSocket = "/run/ulagg/ulagg.sock"

// DefaultRuntimeDir is the runtime directory used when [control]
// runtime_dir is absent (Control.RuntimeDir is "").
const DefaultRuntimeDir = "/run/ulagg"

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
	Limits   Limits
	Laggs    []Lagg
	Services []Service
	Routes   []Route // [[route]]: static routes (route.go)
	VLANs    []VLAN  // [[vlan]]: VLAN interfaces on laggs (vlan.go)
}

// Limits bounds what the process may use.
type Limits struct {
	// MemoryMB is the Go runtime's soft memory limit in MiB
	// (debug.SetMemoryLimit), set at start; 0 = DefaultMemoryMB. The
	// GOMEMLIMIT environment variable, when set, takes precedence.
	MemoryMB int
	// SYNRate is how many TCP SYNs a second reach the stack from sources
	// it has not completed a handshake with lately, and as many again from
	// those it has; the rest are dropped before the stack sees them (SYN
	// admission). 0 = DefaultSYNRate.
	SYNRate int
	// SYNBurst is how many SYNs may arrive at once above SYNRate; 0 =
	// DefaultSYNBurst.
	SYNBurst int
}

// Memory limit default and bounds, in MiB.
const (
	DefaultMemoryMB = 96
	MinMemoryMB     = 32
	MaxMemoryMB     = 1 << 20
)

// MemoryLimit returns the memory limit in bytes, the default if unset.
func (l Limits) MemoryLimit() int64 { return int64(cmp.Or(l.MemoryMB, DefaultMemoryMB)) << 20 }

// SYN admission defaults and bounds (SYNs a second, SYNs).
const (
	DefaultSYNRate  = 20000
	DefaultSYNBurst = 2000
	MaxSYNRate      = 10_000_000
	MaxSYNBurst     = 1_000_000
)

// SYNRateOrDefault returns SYNRate, the default if unset.
func (l Limits) SYNRateOrDefault() int { return cmp.Or(l.SYNRate, DefaultSYNRate) }

// SYNBurstOrDefault returns SYNBurst, the default if unset.
func (l Limits) SYNBurstOrDefault() int { return cmp.Or(l.SYNBurst, DefaultSYNBurst) }

// Control configures the control socket used by the CLI.
type Control struct {
	Socket string
	// RuntimeDir holds the state files recording what ulagg changed on
	// host interfaces, so that a start after a crash puts it back; ""
	// means DefaultRuntimeDir.
	RuntimeDir string
	// Group (a group name or gid; "" none) makes the socket 0660 in that
	// group: its members may read (status, monitor, hash), not change.
	Group string
}

// RuntimeDirOrDefault returns RuntimeDir, or DefaultRuntimeDir if unset.
func (c Control) RuntimeDirOrDefault() string {
	if c.RuntimeDir == "" {
		return DefaultRuntimeDir
	}
	return c.RuntimeDir
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
	// DHCP runs a DHCPv4 client on the lagg ("dhcp" in addresses); its
	// lease adds to the static Addresses.
	DHCP bool
	// SLAAC takes IPv6 addresses, on-link prefixes and default routers
	// from router advertisements ("slaac" in addresses).
	SLAAC     bool
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
	// Monitor is the link monitor, [lagg.monitor] (monitor.go).
	Monitor Monitor
	// AnnounceCount (announce_count; 0: 2) is how many times each failover,
	// MAC change or link up announces the lagg's addresses,
	// AnnounceInterval (announce_interval_ms; 0: 100 ms) apart (announce.go).
	AnnounceCount    int
	AnnounceInterval time.Duration
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
	Select         string // aggregator selection: "stable" ("" too), "bandwidth" or "count"
}

// Port is one member interface of a lagg.
type Port struct {
	Name      string
	Kind      string // a registered port kind (linkep.Kinds): "afpacket" or "tap"
	Priority  uint16 // lower is preferred
	SpeedMbps uint64 // 0 = ask the interface
	// DisableGSO (gso = false; ifconfig laggport IF -tso) keeps the port
	// from offering host GSO (64 KB segments, AF_PACKET and TAP), for peers that
	// cannot take frames larger than the MTU: Open vSwitch's userspace
	// datapath, DPDK's af_packet. Changing it reopens the port.
	DisableGSO bool
	// Disabled (disabled = true; ifconfig laggport IF -active) keeps the
	// port in the lagg but out of service, as if its link were down
	// (config/port_admin.go).
	Disabled bool
	// CarrierPollMs (carrier_poll_ms) is how often the port reads its
	// carrier directly, so a far-end carrier loss is seen in milliseconds
	// instead of when the kernel's batched link events report it: 0 is
	// DefaultCarrierPollMs, CarrierPollOff (carrier_poll_ms = 0 in TOML)
	// keeps rtnetlink events only. Per port, as speed_mbps and gso: it is
	// a property of the interface's driver. Changing it reopens the port.
	CarrierPollMs int
}

// Carrier polling: the default interval, the largest, and the value that
// turns polling off.
const (
	DefaultCarrierPollMs = 10
	MaxCarrierPollMs     = 10000
	CarrierPollOff       = -1
)

// CarrierPoll is the poll interval to open the port with
// (linkep.OpenOptions.CarrierPoll), the default filled in; negative for none.
func (p Port) CarrierPoll() time.Duration {
	if p.CarrierPollMs < 0 {
		return -1
	}
	return time.Duration(cmp.Or(p.CarrierPollMs, DefaultCarrierPollMs)) * time.Millisecond
}

// SameOpening reports whether p and q open their interface alike (kind,
// speed, GSO): a port whose opening changes is reopened.
func (p Port) SameOpening(q Port) bool {
	return p.Kind == q.Kind && p.SpeedMbps == q.SpeedMbps && p.DisableGSO == q.DisableGSO &&
		p.CarrierPoll() == q.CarrierPoll()
}

// Service is a built-in responder on the lagg addresses. The limits are
// 0 for the kind's default (see Budget); each applies to some kinds only.
type Service struct {
	Kind string // "tcp-echo", "udp-echo", "tcp-discard", "http-status" or "iperf3"
	Port uint16
	Lagg string // "" = every lagg
	// MaxConns bounds the connections open at once (TCP kinds).
	MaxConns int
	// MaxConnsPerSource bounds them per client address (an IPv6 client
	// counts by its /64) (TCP kinds).
	MaxConnsPerSource int
	// IdleTimeout closes a connection that has sent nothing, or taken
	// nothing of what it is sent, for this long (TCP kinds).
	IdleTimeout time.Duration
	// RatePerSource bounds the replies per second to one client address
	// (an IPv6 client by its /64), with a burst of as many (udp-echo).
	RatePerSource int
	// Details makes http-status serve every lagg's full status as JSON
	// instead of a one-line health answer (http-status).
	Details bool
}

// ServiceBudget is what a service may use, every limit resolved.
type ServiceBudget struct {
	MaxConns          int
	MaxConnsPerSource int
	IdleTimeout       time.Duration
	RatePerSource     int
}

// Service limit defaults and bounds.
const (
	DefaultMaxConns          = 256
	DefaultMaxConnsPerSource = 32
	DefaultIdleTimeout       = 5 * time.Minute  // tcp-echo, tcp-discard
	DefaultHTTPIdleTimeout   = 30 * time.Second // http-status
	DefaultRatePerSource     = 100              // udp-echo replies per second
	MaxServiceConns          = 65535
	MaxIdleTimeout           = 24 * time.Hour
	MaxRatePerSource         = 1000000
	DefaultIperf3Port        = 5201 // the port iperf3 -c connects to
)

// Budget returns s's limits with the kind's default for each one unset.
func (s Service) Budget() ServiceBudget {
	b := ServiceBudget{
		MaxConns:          cmp.Or(s.MaxConns, DefaultMaxConns),
		MaxConnsPerSource: cmp.Or(s.MaxConnsPerSource, DefaultMaxConnsPerSource),
		IdleTimeout:       cmp.Or(s.IdleTimeout, DefaultIdleTimeout),
		RatePerSource:     cmp.Or(s.RatePerSource, DefaultRatePerSource),
	}
	if s.Kind == "http-status" && s.IdleTimeout == 0 {
		b.IdleTimeout = DefaultHTTPIdleTimeout
	}
	b.MaxConnsPerSource = min(b.MaxConnsPerSource, b.MaxConns)
	return b
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
	n.Routes = slices.Clone(c.Routes)
	n.VLANs = cloneVLANs(c.VLANs)
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
	n.Monitor.ARPTargets = slices.Clone(l.Monitor.ARPTargets)
	n.Monitor.NSTargets = slices.Clone(l.Monitor.NSTargets)
	return n
}

// MaxFileSize bounds the size of a configuration file.
const MaxFileSize = 1 << 20

// Load reads and parses the file at path; messages name path. The file
// must be a regular file of at most MaxFileSize bytes (readFile).
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// readFile reads path, which must be a regular file of at most MaxFileSize
// bytes, without ever blocking: a FIFO or device in its place (say, swapped
// in before a reload) is refused instead of read. It checks the type before
// opening and again on the opened file, and opens with O_NONBLOCK so that a
// FIFO swapped in between the two cannot block the open.
func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkConfigFile(path, fi); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkConfigFile(path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes (1 MiB), the limit for a configuration file", path, MaxFileSize)
	}
	return data, nil
}

func checkConfigFile(path string, fi os.FileInfo) error {
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s): refusing to read it", path, fileKind(fi.Mode()))
	case fi.Size() > MaxFileSize:
		return fmt.Errorf("%s is %d bytes, larger than %d bytes (1 MiB), the limit for a configuration file", path, fi.Size(), MaxFileSize)
	}
	return nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
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
