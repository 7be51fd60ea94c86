package config_test

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/ulagg/ulagg/config"
)

// lagg0 is a valid lagg header taking lines 1-2.
const lagg0 = "[[lagg]]\nname = \"lagg0\"\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every error line, in order
	}{
		// TOML syntax, reported with the library's message.
		{"syntax", "[[lagg]]\nname = = 1\n", []string{`t.toml:2: invalid TOML: expected value but found '=' instead`}},
		{"syntax in array", "a = 1\nb = [1,\n 2,\n x]\n", []string{`t.toml:4: invalid TOML: expected value but found "x" instead`}},
		{"duplicate key", lagg0 + "name = \"x\"\n", []string{`t.toml:3: invalid TOML: Key 'lagg.name' has already been defined.`}},

		// Lines must survive comments, strings and brackets in odd places.
		{"tricky lexing", "# [[lagg]] in a comment\n" +
			"[[lagg]] # ]]\n" +
			"name = \"lagg0\" # \"quoted # hash\"\n" +
			"addresses = [ # comment [\n  \"10.0.0.1/8\", # ]\n]\n" +
			"proto = 'x#y'\n" +
			"\"mtu\" = 1\n" +
			"[ lagg . lacp ]\n" +
			"rate = \"\"\"\nfastest\"\"\"\n" +
			"mode = '''\n]]'''\n" +
			"[[lagg.port]]\n" +
			"name = \"a b\"\n", []string{
			`t.toml:7: lagg[0].proto: "x#y" is not one of none, failover, loadbalance, lacp, roundrobin, broadcast`,
			`t.toml:8: lagg[0].mtu: 1 is out of range 68..65535 (or 0 for unset)`,
			`t.toml:10: lagg[0].lacp.rate: "fastest" is not one of fast, slow`,
			`t.toml:12: lagg[0].lacp.mode: "]]" is not one of active, passive`,
			`t.toml:15: lagg[0].port[0].name: "a b" must not contain whitespace`,
		}},
		{"crlf and escapes in keys", "[[lagg]]\r\nname = \"lagg0\"\r\n\"\\u006Dtu\" = 1\r\n", []string{
			`t.toml:3: lagg[0].mtu: 1 is out of range 68..65535 (or 0 for unset)`,
		}},

		// Unknown keys, at every level.
		{"unknown top", "bogus = 1\n", []string{`t.toml:1: bogus: unknown key`}},
		{"unknown control", "[control]\nsock = \"/x\"\n", []string{`t.toml:2: control.sock: unknown key`}},
		{"unknown metrics", "[metrics]\nport = 1\n", []string{`t.toml:2: metrics.port: unknown key`}},
		{"unknown lagg key with hint", lagg0 + "MTU = 1500\n", []string{`t.toml:3: lagg[0].MTU: unknown key (did you mean mtu?)`}},
		{"unknown table", lagg0 + "[lagg.bogus]\nx = 1\n", []string{`t.toml:3: lagg[0].bogus: unknown key`}},
		{"unknown lacp key with hint", lagg0 + "[lagg.lacp]\nmaxports = 2\n", []string{`t.toml:4: lagg[0].lacp.maxports: unknown key (did you mean max_ports?)`}},
		{"unknown failover key", lagg0 + "[lagg.failover]\nrx-all = false\n", []string{`t.toml:4: lagg[0].failover.rx-all: unknown key (did you mean rx_all?)`}},
		{"unknown port key", lagg0 + "[[lagg.port]]\nname = \"wm0\"\nprio = 1\n", []string{`t.toml:5: lagg[0].port[0].prio: unknown key`}},
		{"unknown service key", "[[service]]\nkind = \"tcp-echo\"\nport = 7\nproto = \"tcp\"\n", []string{`t.toml:4: service[0].proto: unknown key`}},
		{"quoted unknown key", lagg0 + "\"a.b\" = 1\n", []string{`t.toml:3: lagg[0]."a.b": unknown key`}},
		{"literal quoted unknown key", lagg0 + "[lagg.'lacp']\n'max ports' = 1\n", []string{`t.toml:4: lagg[0].lacp."max ports": unknown key (did you mean max_ports?)`}},
		{"case matters", "[[lagg]]\nName = \"lagg0\"\n", []string{
			`t.toml:1: lagg[0].name: required key is missing`,
			`t.toml:2: lagg[0].Name: unknown key (did you mean name?)`,
		}},

		// Types.
		{"string for int", lagg0 + "mtu = \"1500\"\n", []string{`t.toml:3: lagg[0].mtu: must be an integer, not the string "1500"`}},
		{"float for int", "[[service]]\nkind = \"tcp-echo\"\nport = 7.0\n", []string{`t.toml:3: service[0].port: must be an integer, not the float 7`}},
		{"int for string", "[[lagg]]\nname = 5\n", []string{`t.toml:2: lagg[0].name: must be a string, not the integer 5`}},
		{"string for bool", lagg0 + "[lagg.failover]\nrx_all = \"yes\"\n", []string{`t.toml:4: lagg[0].failover.rx_all: must be true or false, not the string "yes"`}},
		{"string for list", lagg0 + "addresses = \"10.0.0.1/8\"\n", []string{`t.toml:3: lagg[0].addresses: must be an array of strings, not the string "10.0.0.1/8"`}},
		{"int in list", lagg0 + "hash = [\"l2\",\n  3]\n", []string{`t.toml:4: lagg[0].hash[1]: must be a string, not the integer 3`}},
		{"int for table", lagg0 + "lacp = 5\n", []string{`t.toml:3: lagg[0].lacp: must be a table ([lacp]), not the integer 5`}},
		{"date for string", lagg0 + "proto = 1979-05-27\n", []string{`t.toml:3: lagg[0].proto: must be a string, not a date/time`}},
		{"single lagg table", "[lagg]\nname = \"lagg0\"\n", []string{`t.toml:1: lagg: must be an array of tables ([[lagg]]), not a table`}},
		{"int in table array", lagg0 + "port = [{ name = \"wm0\" }, 5]\n", []string{`t.toml:3: lagg[0].port[1]: must be a table, not the integer 5`}},

		// Required keys, reported at the table's header.
		{"lagg name missing", "[[lagg]]\nproto = \"failover\"\n", []string{`t.toml:1: lagg[0].name: required key is missing`}},
		{"port name missing", lagg0 + "[[lagg.port]]\nkind = \"tap\"\n", []string{`t.toml:3: lagg[0].port[0].name: required key is missing`}},
		{"service keys missing", "[[service]]\nlagg = \"\"\n", []string{
			`t.toml:1: service[0].kind: required key is missing`,
			`t.toml:1: service[0].port: required key is missing`,
		}},

		// Lagg names.
		{"lagg name upper", "[[lagg]]\nname = \"Lagg0\"\n", []string{`t.toml:2: lagg[0].name: "Lagg0" is not a valid lagg name: want a lowercase letter, then up to 14 of a-z 0-9 _ . -`}},
		{"lagg name digit first", "[[lagg]]\nname = \"0lagg\"\n", []string{`t.toml:2: lagg[0].name: "0lagg" is not a valid lagg name: want a lowercase letter, then up to 14 of a-z 0-9 _ . -`}},
		{"lagg name too long", "[[lagg]]\nname = \"abcdefghijklmnop\"\n", []string{`t.toml:2: lagg[0].name: "abcdefghijklmnop" is not a valid lagg name: want a lowercase letter, then up to 14 of a-z 0-9 _ . -`}},
		{"duplicate lagg", lagg0 + lagg0, []string{`t.toml:4: lagg[1].name: lagg "lagg0" is already defined by lagg[0]`}},

		// Simple enums.
		{"proto", lagg0 + "proto = \"carrierpigeon\"\n", []string{`t.toml:3: lagg[0].proto: "carrierpigeon" is not one of none, failover, loadbalance, lacp, roundrobin, broadcast`}},
		{"port kind", lagg0 + "[[lagg.port]]\nname = \"wm0\"\nkind = \"raw\"\n", []string{`t.toml:5: lagg[0].port[0].kind: "raw" is not one of afpacket, tap, wire`}},
		{"lacp rate and mode", lagg0 + "[lagg.lacp]\nrate = \"medium\"\nmode = \"lazy\"\n", []string{
			`t.toml:4: lagg[0].lacp.rate: "medium" is not one of fast, slow`,
			`t.toml:5: lagg[0].lacp.mode: "lazy" is not one of active, passive`,
		}},

		// Addresses, one element per line so each line is checked.
		{"addresses", lagg0 + "addresses = [\n  \"10.0.0.1\",\n  \"10.0.0.1/33\",\n  \"10.0.0.2/8\",\n  \"10.0.0.2/16\",\n  \"224.0.0.1/4\",\n  \"0.0.0.0/0\",\n  \"::ffff:10.0.0.3/120\",\n]\n", []string{
			`t.toml:4: lagg[0].addresses[0]: "10.0.0.1" is not an address/prefix-length (like 192.0.2.1/24 or 2001:db8::1/64)`,
			`t.toml:5: lagg[0].addresses[1]: "10.0.0.1/33" is not an address/prefix-length (like 192.0.2.1/24 or 2001:db8::1/64)`,
			`t.toml:7: lagg[0].addresses[3]: address 10.0.0.2 is already given by addresses[2]`,
			`t.toml:8: lagg[0].addresses[4]: 224.0.0.1/4 is not a unicast address`,
			`t.toml:9: lagg[0].addresses[5]: 0.0.0.0/0 is not a unicast address`,
			`t.toml:10: lagg[0].addresses[6]: ::ffff:10.0.0.3/120 is an IPv4-mapped IPv6 address; write it as IPv4`,
		}},

		// Integer ranges.
		{"mtu low", lagg0 + "mtu = 67\n", []string{`t.toml:3: lagg[0].mtu: 67 is out of range 68..65535 (or 0 for unset)`}},
		{"mtu high", lagg0 + "mtu = 70000\n", []string{`t.toml:3: lagg[0].mtu: 70000 is out of range 68..65535 (or 0 for unset)`}},
		{"mtu negative", lagg0 + "mtu = -1\n", []string{`t.toml:3: lagg[0].mtu: -1 is out of range 68..65535 (or 0 for unset)`}},
		{"delays", lagg0 + "up_delay_ms = 600001\ndown_delay_ms = -1\n", []string{
			`t.toml:3: lagg[0].up_delay_ms: 600001 is out of range 0..600000`,
			`t.toml:4: lagg[0].down_delay_ms: -1 is out of range 0..600000`,
		}},
		{"port priority", lagg0 + "[[lagg.port]]\nname = \"wm0\"\n[[lagg.port]]\nname = \"wm1\"\npriority = 70000\n", []string{`t.toml:7: lagg[0].port[1].priority: 70000 is out of range 0..65535`}},
		{"port speed", lagg0 + "[[lagg.port]]\nname = \"wm0\"\nspeed_mbps = -1\n", []string{`t.toml:5: lagg[0].port[0].speed_mbps: -1 is out of range: must not be below 0`}},
		{"lacp ranges", lagg0 + "[lagg.lacp]\nmax_ports = 17\nmin_ports = 0\nsystem_priority = 0\nkey = 65536\n", []string{
			`t.toml:4: lagg[0].lacp.max_ports: 17 is out of range 1..16`,
			`t.toml:5: lagg[0].lacp.min_ports: 0 is out of range 1..16`,
			`t.toml:6: lagg[0].lacp.system_priority: 0 is out of range 1..65535`,
			`t.toml:7: lagg[0].lacp.key: 65536 is out of range 0..65535`,
		}},
		{"lacp min over max", lagg0 + "[lagg.lacp]\nmax_ports = 2\nmin_ports = 3\n", []string{`t.toml:5: lagg[0].lacp.min_ports: 3 is more than max_ports (2)`}},
		{"lacp dotted key", lagg0 + "lacp.max_ports = 0\n", []string{`t.toml:3: lagg[0].lacp.max_ports: 0 is out of range 1..16`}},
		{"service port", "[[service]]\nkind = \"tcp-echo\"\nport = 0\n[[service]]\nkind = \"udp-echo\"\nport = 65536\n", []string{
			`t.toml:3: service[0].port: 0 is out of range 1..65535`,
			`t.toml:6: service[1].port: 65536 is out of range 1..65535`,
		}},

		// MAC.
		{"mac syntax", lagg0 + "mac = \"02:00:00:00:00\"\n", []string{`t.toml:3: lagg[0].mac: "02:00:00:00:00" is not a 48-bit MAC address (like 02:00:00:00:00:01)`}},
		{"mac eui64", lagg0 + "mac = \"02:00:00:00:00:00:00:01\"\n", []string{`t.toml:3: lagg[0].mac: "02:00:00:00:00:00:00:01" is not a 48-bit MAC address (like 02:00:00:00:00:01)`}},
		{"mac multicast", lagg0 + "mac = \"01:00:5e:00:00:01\"\n", []string{`t.toml:3: lagg[0].mac: 01:00:5e:00:00:01 is a group address; want unicast (lowest bit of the first byte clear)`}},
		{"mac zero", lagg0 + "mac = \"00:00:00:00:00:00\"\n", []string{`t.toml:3: lagg[0].mac: 00:00:00:00:00:00: the all-zero address is not allowed`}},

		// Hash.
		{"hash empty", lagg0 + "hash = []\n", []string{`t.toml:3: lagg[0].hash: must list at least one of l2, l3, l4 (leave it out for all three)`}},
		{"hash bad and dup", lagg0 + "hash = [\"l2\", \"l5\", \"l2\"]\n", []string{
			`t.toml:3: lagg[0].hash[1]: "l5" is not one of l2, l3, l4`,
			`t.toml:3: lagg[0].hash[2]: "l2" is already given by hash[0]`,
		}},

		// LACP multi-speed spellings.
		{"two multi-speed spellings", lagg0 + "[lagg.lacp]\nmulti-speed = true\nmulti-linkspeed = false\n", []string{`t.toml:5: lagg[0].lacp.multi-linkspeed: also given as multi-speed; these are spellings of the same key, give only one`}},
		{"three multi-speed spellings", lagg0 + "[lagg.lacp]\nmulti_speed = true\nmulti-speed = true\nmulti-linkspeed = true\n", []string{
			`t.toml:5: lagg[0].lacp.multi-speed: also given as multi_speed; these are spellings of the same key, give only one`,
			`t.toml:6: lagg[0].lacp.multi-linkspeed: also given as multi_speed; these are spellings of the same key, give only one`,
		}},

		// Ports.
		{"port names", lagg0 + "port = [\n  { name = \"\" },\n  { name = \"a/b\" },\n  { name = \"a b\" },\n  { name = \"abcdefghijklmnop\" },\n  { name = \"..\" },\n  { name = \"eth0:1\" },\n]\n", []string{
			`t.toml:4: lagg[0].port[0].name: "" is empty; an interface name has 1..15 bytes`,
			`t.toml:5: lagg[0].port[1].name: "a/b" must not contain '/' or ':'`,
			`t.toml:6: lagg[0].port[2].name: "a b" must not contain whitespace`,
			`t.toml:7: lagg[0].port[3].name: "abcdefghijklmnop" is 16 bytes; an interface name has at most 15`,
			`t.toml:8: lagg[0].port[4].name: ".." is not a valid interface name`,
			`t.toml:9: lagg[0].port[5].name: "eth0:1" must not contain '/' or ':'`,
		}},
		{"port twice in lagg (inline)", lagg0 + "port = [{ name = \"wm0\" },\n  { name = \"wm0\" }]\n", []string{`t.toml:4: lagg[0].port[1].name: "wm0" is already a port of this lagg (port[0])`}},
		{"port in two laggs", lagg0 + "[[lagg.port]]\nname = \"wm0\"\n[[lagg]]\nname = \"lagg1\"\n[[lagg.port]]\nname = \"wm0\"\n", []string{`t.toml:8: lagg[1].port[0].name: "wm0" is a port in two laggs: lagg0 and lagg1`}},
		{"too many ports", lagg0 + manyPorts(33), []string{`t.toml:99: lagg[0].port[32]: 33 ports; a lagg takes at most 32`}},

		// Services.
		{"service kind", "[[service]]\nkind = \"ftp\"\nport = 21\n", []string{`t.toml:2: service[0].kind: "ftp" is not one of tcp-echo, udp-echo, tcp-discard, http-status, iperf3`}},
		{"service lagg unknown", lagg0 + "[[service]]\nkind = \"tcp-echo\"\nport = 7\nlagg = \"lagg9\"\n", []string{`t.toml:6: service[0].lagg: no lagg is named "lagg9"`}},
		{"service duplicate", "[[service]]\nkind = \"tcp-echo\"\nport = 7\n[[service]]\nkind = \"tcp-echo\"\nport = 7\n", []string{`t.toml:6: service[1].port: duplicate of service[0] (tcp-echo on port 7)`}},
		{"tcp port shared", "[[service]]\nkind = \"tcp-echo\"\nport = 9\n[[service]]\nkind = \"tcp-discard\"\nport = 9\n", []string{`t.toml:6: service[1].port: tcp port 9 is already used by service[0] (tcp-echo)`}},
		{"http-status is tcp", "[[service]]\nkind = \"http-status\"\nport = 80\n[[service]]\nkind = \"tcp-echo\"\nport = 80\n", []string{`t.toml:6: service[1].port: tcp port 80 is already used by service[0] (http-status)`}},
		{"scoped and unscoped", lagg0 + "[[service]]\nkind = \"tcp-echo\"\nport = 7\nlagg = \"lagg0\"\n[[service]]\nkind = \"tcp-echo\"\nport = 7\n", []string{`t.toml:9: service[1].port: tcp port 7 is already used by service[0] (tcp-echo)`}},

		// Control and metrics.
		{"socket empty", "[control]\nsocket = \"\"\n", []string{`t.toml:2: control.socket: must not be empty`}},
		{"socket long", "[control]\nsocket = \"/" + strings.Repeat("s", 107) + "\"\n", []string{`t.toml:2: control.socket: path is 108 bytes; a unix socket path takes at most 107`}},
		{"listen no port", "[metrics]\nlisten = \"9100\"\n", []string{`t.toml:2: metrics.listen: "9100" is not host:port (like 127.0.0.1:9100 or [::1]:9100)`}},
		{"listen port 0", "[metrics]\nlisten = \"localhost:0\"\n", []string{`t.toml:2: metrics.listen: "localhost:0": port must be a number 1..65535`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("t.toml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse: got %+v, nil error; want %q", c, tt.want)
			}
			if c != nil {
				t.Errorf("Parse: got config %+v with error, want nil", c)
			}
			if got := errLines(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("Parse errors:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// manyPorts returns n [[lagg.port]] tables, three lines each, starting on line 3.
func manyPorts(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "[[lagg.port]]\nname = \"p%d\"\n\n", i)
	}
	return b.String()
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{"mtu zero", lagg0 + "mtu = 0\n"},
		{"mtu bounds", lagg0 + "mtu = 68\n[[lagg]]\nname = \"lagg1\"\nmtu = 65535\n"},
		{"32 ports", lagg0 + manyPorts(32)},
		{"same port different transports", "[[service]]\nkind = \"tcp-echo\"\nport = 7\n[[service]]\nkind = \"udp-echo\"\nport = 7\n"},
		{"same port different laggs", lagg0 + "[[lagg]]\nname = \"lagg1\"\n[[service]]\nkind = \"tcp-echo\"\nport = 7\nlagg = \"lagg0\"\n[[service]]\nkind = \"tcp-discard\"\nport = 7\nlagg = \"lagg1\"\n"},
		{"same address on two laggs", lagg0 + "addresses = [\"10.0.0.1/8\"]\n[[lagg]]\nname = \"lagg1\"\naddresses = [\"10.0.0.1/8\"]\n"},
		{"lagg name max", "[[lagg]]\nname = \"a.b-c_d01234567\"\n"},
		{"inline tables", "control = { socket = \"/s\" }\nlagg = [{ name = \"lagg0\", lacp = { rate = \"fast\" }, port = [{ name = \"wm0\" }] }]\n"},
		{"bom", "\xef\xbb\xbf" + lagg0},
		{"lacp min equals max", lagg0 + "[lagg.lacp]\nmax_ports = 3\nmin_ports = 3\n"},
		{"metrics ipv6", "[metrics]\nlisten = \"[::1]:9100\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := config.Parse("t.toml", []byte(tt.src)); err != nil {
				t.Errorf("Parse: got error %v, want nil", err)
			}
		})
	}
}

func TestSyntaxErrorUnwraps(t *testing.T) {
	_, err := config.Parse("t.toml", []byte("a = [\n"))
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Parse: got %v, want an error wrapping toml.ParseError", err)
	}
	var ce *config.Error
	if !errors.As(err, &ce) || ce.File != "t.toml" || ce.Line != pe.Position.Line {
		t.Errorf("Parse: got %+v, want *config.Error with File t.toml, Line %d", ce, pe.Position.Line)
	}
}

func TestSeveralErrors(t *testing.T) {
	path := filepath.Join("testdata", "several-errors.toml")
	_, err := config.Load(path)
	want := []string{
		path + `:2: control.socket: must not be empty`,
		path + `:5: lagg[0].name: "Lagg0" is not a valid lagg name: want a lowercase letter, then up to 14 of a-z 0-9 _ . -`,
		path + `:6: lagg[0].proto: "carrierpigeon" is not one of none, failover, loadbalance, lacp, roundrobin, broadcast`,
		path + `:7: lagg[0].mtu: 70000 is out of range 68..65535 (or 0 for unset)`,
		path + `:11: lagg[0].port[0].priority: 70000 is out of range 0..65535`,
		path + `:15: lagg[1].bogus: unknown key`,
		path + `:18: lagg[1].port[0].name: "wm0" is a port in two laggs: Lagg0 and lagg1`,
		path + `:26: service[1].port: tcp port 9 is already used by service[0] (tcp-echo)`,
	}
	if got := errLines(t, err); !slices.Equal(got, want) {
		t.Errorf("Load(several-errors.toml):\ngot  %q\nwant %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	valid := func() *config.Config {
		c := config.Default()
		l := config.NewLagg("lagg0")
		l.Ports = []config.Port{{Name: "wm0", Kind: "afpacket", Priority: config.DefaultPriority}}
		c.Laggs = []config.Lagg{l}
		return c
	}
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string
	}{
		{"valid", func(*config.Config) {}, nil},
		{"zero lagg literal", func(c *config.Config) { c.Laggs = append(c.Laggs, config.Lagg{Name: "lagg1"}) }, []string{
			`lagg[1].proto: "" is not one of none, failover, loadbalance, lacp, roundrobin, broadcast`,
			`lagg[1].hash: must list at least one of l2, l3, l4 (leave it out for all three)`,
			`lagg[1].lacp.max_ports: 0 is out of range 1..16`,
			`lagg[1].lacp.min_ports: 0 is out of range 1..16`,
			`lagg[1].lacp.rate: "" is not one of fast, slow`,
			`lagg[1].lacp.mode: "" is not one of active, passive`,
			`lagg[1].lacp.system_priority: 0 is out of range 1..65535`,
			`lagg[1].roundrobin.stride: 0 is out of range 1..65535`,
		}},
		{"sub-millisecond delay", func(c *config.Config) { c.Laggs[0].UpDelay = 1500 * time.Microsecond }, []string{`lagg[0].up_delay_ms: 1.5ms is not a whole number of milliseconds`}},
		{"long delay", func(c *config.Config) { c.Laggs[0].DownDelay = 11 * time.Minute }, []string{`lagg[0].down_delay_ms: 660000 is out of range 0..600000`}},
		{"invalid prefix", func(c *config.Config) { c.Laggs[0].Addresses = []netip.Prefix{{}} }, []string{`lagg[0].addresses[0]: invalid prefix`}},
		{"mac length", func(c *config.Config) { c.Laggs[0].MAC = []byte{2, 0, 0} }, []string{`lagg[0].mac: 02:00:00 is not a 48-bit MAC address`}},
		{"port name control char", func(c *config.Config) { c.Laggs[0].Ports[0].Name = "wm\x01" }, []string{`lagg[0].port[0].name: "wm\x01" has control characters or invalid UTF-8`}},
		{"port name invalid utf8", func(c *config.Config) { c.Laggs[0].Ports[0].Name = "wm\xff" }, []string{`lagg[0].port[0].name: "wm\xff" has control characters or invalid UTF-8`}},
		{"empty socket", func(c *config.Config) { c.Control.Socket = "" }, []string{`control.socket: must not be empty`}},
		{"port kind empty", func(c *config.Config) { c.Laggs[0].Ports[0].Kind = "" }, []string{`lagg[0].port[0].kind: "" is not one of afpacket, tap, wire`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			if got := errLines(t, c.Validate()); !slices.Equal(got, tt.want) {
				t.Errorf("Validate:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
	var nilCfg *config.Config
	if err := nilCfg.Validate(); err == nil {
		t.Errorf("nil Validate: got nil, want an error")
	}
}

func TestParsedConfigValidates(t *testing.T) {
	for _, name := range []string{"full.toml", "minimal.toml", "lacp-spellings.toml"} {
		t.Run(name, func(t *testing.T) {
			if err := mustParseFile(t, name).Validate(); err != nil {
				t.Errorf("Validate after Parse: got %v, want nil", err)
			}
		})
	}
}
