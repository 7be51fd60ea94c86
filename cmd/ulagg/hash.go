package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/ulagg/ulagg/stack/appliance"
)

func init() {
	commands = append(commands, command{"hash", "[-s SOCKET] LAGG PROTO SRC:PORT DST:PORT [--vlan N] [--dst-mac MAC]",
		"show the port a flow leaves on (ovs-appctl bond/hash)", cmdHash})
}

const hashUsage = `usage: ulagg hash [-s SOCKET] LAGG PROTO SRC:PORT DST:PORT [--vlan N] [--dst-mac MAC]

Print the port of LAGG that a flow leaves on now, asked of the lagg's own
transmitter (the code every frame goes through), and the flow's hash.
PROTO is tcp, udp, sctp or udplite; IPv6 endpoints are [ADDR]:PORT. The
destination MAC (hashed with l2) is the neighbour entry of DST, else of
SRC; --dst-mac gives it (the next hop's, for a destination off the link).
With loadbalance and lacp, asking binds the flow's bucket as its first
frame would. Failover and none name the transmitting port; roundrobin and
broadcast have no port per flow and say so.
`

func cmdHash(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("hash", stderr)
	fs.Usage = func() { fmt.Fprint(stdout, hashUsage) }
	sock := fs.String("s", defaultSocket(), "control `SOCKET` path")
	vlan := fs.Uint("vlan", 0, "802.1Q VLAN `ID` of the flow (1..4094)")
	dstMAC := fs.String("dst-mac", "", "destination `MAC` to hash (default: the neighbour entry)")
	// Flags may follow the positional words too.
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 4 {
		fmt.Fprint(stderr, hashUsage)
		return fmt.Errorf("%w: want LAGG PROTO SRC:PORT DST:PORT", errUsage)
	}
	words := pos[1:]
	if *vlan != 0 {
		words = append(words, "vlan", strconv.FormatUint(uint64(*vlan), 10))
	}
	if *dstMAC != "" {
		words = append(words, "dst-mac", *dstMAC)
	}
	f, err := appliance.ParseFlowArgs(words)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	resp, err := appliance.ControlCall(*sock, appliance.ControlRequest{Cmd: appliance.CmdHash, Lagg: pos[0], Args: f.Args()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s", pos[0], resp.Output)
	return nil
}
