// Package config loads, validates, prints and compares the ulagg
// configuration file (ulagg run -c FILE).
//
// # Schema
//
// The file is TOML (v1.1). Every key below is optional unless marked
// required; a key that is not listed here is an error.
//
//	[control]
//	socket = "/run/ulagg/ulagg.sock"  # control socket for the CLI (default shown)
//	runtime_dir = "/run/ulagg"        # absolute; state files of the host interfaces ulagg
//	                                  # changed, put back at the next start after a crash
//	group = ""                        # group name or gid: the socket becomes 0660 in it and
//	                                  # its members may read (status, monitor, hash, route
//	                                  # show) only; ulagg must be in the group; "" (default)
//	                                  # = owner only
//
//	[metrics]
//	listen = ""                       # host:port for Prometheus; "" (default) = off
//	                                  # (a warning is logged unless it is a loopback address)
//
//	[limits]
//	memory_mb = 96                    # 32..1048576: the Go runtime's soft memory limit in MiB,
//	                                  # set at start; absent or 0 = 96. GOMEMLIMIT, if set, wins
//	syn_rate = 20000                  # 1..10000000 TCP SYNs a second let through to the stack from
//	                                  # sources not served lately, and as many again from those
//	                                  # served lately (handshake done in the last 2 min); the rest
//	                                  # are dropped (ulagg_stack_drops_total{reason="syn_admission"});
//	                                  # set at start; absent or 0 = 20000
//	syn_burst = 2000                  # 1..1000000 SYNs at once above syn_rate; absent or 0 = 2000
//
//	[[lagg]]                          # one table per aggregated interface
//	name = "lagg0"                    # required, unique; [a-z][a-z0-9_.-]{0,14}
//	proto = "failover"                # none (default) | failover | loadbalance | lacp | roundrobin | broadcast
//	addresses = ["192.168.1.1/24", "fd00::1/64"]  # address/prefix-length, unicast, no repeats;
//	                                  # and the words "dhcp" (a DHCPv4 client: ifconfig
//	                                  # inet dhcp) and "slaac" (addresses and routers from
//	                                  # IPv6 router advertisements: inet6 slaac); no DHCPv6
//	mtu = 1500                        # 68..65535; absent or 0 = the first port's MTU
//	mac = "02:00:00:00:00:01"         # unicast, not all-zero; absent = the first port's MAC
//	hash = ["l2", "l3", "l4"]         # loadbalance/lacp hash input; default all three
//	up_delay_ms = 0                   # 0..600000: wait before using a port whose link came up
//	down_delay_ms = 0                 # 0..600000: wait before dropping a port whose link went down
//	down = false                      # administratively down (ulagg ifconfig lagg0 down)
//	announce_count = 2                # 1..255 gratuitous ARPs / unsolicited NAs per address on each
//	                                  # failover, MAC change or link up (Linux num_grat_arp);
//	                                  # absent or 0 = 2; TOML only, no ifconfig word
//	announce_interval_ms = 100        # 1..60000 between them (Linux peer_notif_delay);
//	                                  # absent or 0 = 100
//
//	[lagg.failover]                   # kept even when proto is not failover
//	rx_all = true                     # accept frames on every port, not only the active one
//
//	[lagg.roundrobin]                 # kept even when proto is not roundrobin
//	stride = 1                        # 1..65535 consecutive frames per port (FreeBSD's rr_limit)
//
//	[lagg.lacp]                       # kept even when proto is not lacp
//	multi_speed = true                # allow ports of different speeds in one aggregator;
//	                                  # also spelled multi-speed or multi-linkspeed (use one)
//	max_ports = 16                    # 1..16 ports distributing at once; the rest stand by
//	min_ports = 1                     # 1..max_ports ports needed for the lagg to be up
//	rate = "slow"                     # slow (30 s) | fast (1 s) LACPDU rate
//	mode = "active"                   # active | passive
//	system_priority = 32768           # 1..65535
//	key = 0                           # 0..65535; 0 = derive automatically
//	fallback = false                  # with no LACP partner, carry traffic: collect on every port,
//	                                  # send where the partner's traffic arrives (not on looped ports)
//	select = "stable"                 # which aggregator carries traffic when links see different
//	                                  # partners: stable (keep the active one while it has ports) |
//	                                  # bandwidth (most speed) | count (most ports)
//
//	[lagg.monitor]                    # link monitor: probes that find silent failures (carrier up,
//	                                  # frames lost); off without a target (monitor.go)
//	arp_targets = ["192.168.1.254"]   # IPv4 unicast, at most 16: ARP probes from each port's own
//	                                  # MAC with sender IP 0.0.0.0 (RFC 5227: nothing is cached)
//	ns_targets = ["fd00::fe"]         # IPv6 unicast, at most 16: neighbour solicitations from
//	                                  # each port's own link-local address
//	interval_ms = 1000                # 10..60000 between probes; absent or 0 = 1000
//	missed_max = 2                    # 1..255 intervals unanswered before the port counts as
//	                                  # link down (failover moves, loadbalance rehashes, lacp
//	                                  # takes it out); absent or 0 = 2; up again on a reply
//	                                  # (after up_delay_ms)
//	validate = "all"                  # ports that need replies to their own probes: all |
//	                                  # active (transmitting) | backup; the others are alive on
//	                                  # any frame received
//	require = "any"                   # any | all: targets that must answer each interval
//	                                  # ifconfig: laggmonitor arp ADDR... interval MS missed N ...
//
//	[[lagg.port]]                     # at most 32 per lagg; a port belongs to one lagg
//	name = "wm0"                      # required; host interface, 1..15 bytes, no '/', ':' or space
//	kind = "afpacket"                 # afpacket (default) | tap
//	priority = 32768                  # 0..65535, lower is preferred (default 32768)
//	speed_mbps = 0                    # 0 = ask the interface
//	gso = true                        # offer host GSO (64 KB TCP segments; afpacket); false for
//	                                  # peers that take no frame above the MTU (Open vSwitch
//	                                  # userspace, DPDK af_packet); ifconfig: laggport IF -tso
//	disabled = false                  # true: out of service without leaving the lagg, as if its
//	                                  # link were down; ifconfig: laggport IF -active | active
//	carrier_poll_ms = 10              # 0..10000: read the carrier (ETHTOOL_GLINK) this often, so a
//	                                  # far-end carrier loss fails over in ms, not when the kernel's
//	                                  # batched link events come; 0 = rtnetlink events only
//
//	[[vlan]]                          # an 802.1Q VLAN interface on a lagg (NetBSD's vlan(4));
//	                                  # ifconfig: vlan100 create, vlan 100 vlanif lagg0, -vlanif
//	name = "vlan100"                  # required, unique: vlan and a number, at most 15 bytes
//	id = 100                          # 1..4094, required with parent; unique per parent
//	parent = "lagg0"                  # a lagg; absent (and no id) = configured but carrying
//	                                  # nothing, like NetBSD's vlan before vlanif
//	addresses = ["10.100.0.1/24"]     # as a lagg's, and "dhcp"; no "slaac". The MTU is the
//	                                  # lagg's (the tag does not eat into it), no TX checksum
//	                                  # offload or GSO; up while its lagg is
//
//	[[route]]                         # a static route of the stack, at most 4096; ulagg route
//	                                  # add|delete (NetBSD route(8) words) changes them at runtime
//	to = "default"                    # required: "default" (its family is via's), a prefix
//	                                  # (10.0.0.0/8, 2001:db8::/32; no bits past the length),
//	                                  # or an address (a host route)
//	via = "192.168.1.254"             # the gateway, the family of to; absent = on-link (then
//	                                  # interface is required); an IPv6 link-local gateway needs
//	                                  # interface. A gateway in no subnet of any interface: the
//	                                  # route waits (route show: no U flag) until one has it
//	interface = ""                    # a lagg or VLAN; "" = the one whose subnet holds via;
//	                                  # also spelled lagg (give one of the two)
//	metric = 0                        # 0..4294967295: among routes of one prefix length the
//	                                  # lowest wins, then connected, static, dhcp, ra
//
//	[[service]]                       # built-in responders on the lagg addresses
//	kind = "tcp-echo"                 # required: tcp-echo | udp-echo | tcp-discard | http-status (TCP)
//	                                  # | iperf3 (TCP; port 5201 is iperf3's default; -P up to max_conns_per_source - 1)
//	port = 7                          # required: 1..65535, one service per TCP or UDP port
//	lagg = ""                         # only on this lagg's (or VLAN's) addresses; "" = all
//	max_conns = 256                   # TCP kinds: 1..65535 connections at once; more are reset
//	max_conns_per_source = 32         # TCP kinds: 1..max_conns per client address (IPv6: per /64)
//	idle_timeout_s = 300              # TCP kinds: 1..86400 s without progress closes a connection
//	                                  # (default 300; 30 for http-status)
//	rate_per_source = 100             # udp-echo: 1..1000000 replies a second per client address
//	                                  # (IPv6: per /64), bursts of as many; source ports below
//	                                  # 1024 are never answered
//	details = false                   # http-status: serve every lagg's full status as JSON
//	                                  # (MACs, LACP partners) instead of /healthz answers
//
// Limits that are absent (or 0) take the defaults shown; a limit given to a
// kind it does not apply to is an error. The http-status service answers
// /healthz (200 when every lagg is up, else 503) and /healthz/LAGG (that
// lagg), each with a one-line body, and 404 for anything else, unless
// details = true.
//
// The "dhcp" address word runs a DHCPv4 client on the interface: the
// lease's address joins the static ones, its router option becomes a
// default route (origin dhcp), and its interface-MTU option lowers the
// lagg's MTU while mtu is absent (a configured mtu wins; a larger value is
// ignored). There is no DHCPv6 client. The "slaac" word takes addresses,
// on-link prefixes and default routers (origin ra) from router
// advertisements. Every lagg and VLAN also has the IPv6 link-local
// address of its MAC (EUI-64), which follows the MAC; no key asks for it.
// While a host interface is a lagg's port, ulagg sets its
// net.ipv6.conf.IF.disable_ipv6 to 1, so that the kernel does not answer
// or autoconfigure with the port's MAC beside the lagg, and puts 0 back
// when the port leaves (after a crash, at the next start).
//
// Arrays of tables may also be written inline, e.g.
// port = [{ name = "wm0" }, { name = "wm1" }].
//
// # Errors
//
// Parse reports every problem it finds, one per line, each naming the
// file, the line and the key path:
//
//	lagg.toml:12: lagg[0].port[1].priority: 70000 is out of range 0..65535
//
// Each line is an *Error. Validate checks a Config built in code the same
// way, without file and line.
//
// # Reload
//
// Diff lists per-lagg changes between two configs, each with its items (a
// setting, a port, an address, the admin state); Items adds services,
// metrics, control and limits, one line each (Item.String); Discarded
// names the runtime changes a reload would undo. The appliance applies
// every change (startup, ifconfig, reload) from this one diff.
package config
