package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/stack/appliance"
)

// The control commands talk to `ulagg run` over its control socket.
func init() {
	commands = append(commands,
		command{"ifconfig", "[-alvz] [IFACE [OPTION...]]", "show or change laggs and VLANs, NetBSD ifconfig syntax", cmdIfconfig},
		command{"save", "[-s SOCKET]", "write the running configuration to the file", cmdSave},
		command{"reload", "[-s SOCKET] [--force] [--dry-run]", "re-read the file, apply the difference", cmdReload},
		command{"diff", "[-s SOCKET]", "show what a reload would change", cmdDiff},
		command{"capture", "[-c N] -w FILE LAGG [PORT]", "write what a lagg sends and receives as pcap", cmdCapture},
	)
}

// socketEnv overrides the default control socket path.
const socketEnv = "ULAGG_SOCKET"

func defaultSocket() string {
	if s := os.Getenv(socketEnv); s != "" {
		return s
	}
	return config.DefaultSocket
}

const ifconfigUsage = `usage: ulagg ifconfig [-s SOCKET] [-a] [-l] [-v] [-z] [--json] [IFACE]
       ulagg ifconfig [-s SOCKET] LAGG OPTION...
       ulagg ifconfig [-s SOCKET] vlanN OPTION...

With no option, show IFACE, a lagg or a VLAN (every one with -a or no
IFACE); -v adds LACP details and counters, -l lists names, --json prints
the status as JSON, -z zeroes the counters after showing them (as
NetBSD's).
Options, as NetBSD's ifconfig(8) and lagg(4):
  create | destroy
  laggproto none|failover|loadbalance|lacp|roundrobin|broadcast | -laggproto
  laggport IF [pri N] [tso | -tso] [active | -active] | -laggport IF | laggportpri IF N
    (-active: disable a port without removing it; a ulagg extension,
    neither NetBSD nor FreeBSD has it)
  laggfailover rx-all | -rx-all
  laggroundrobin stride N  (also FreeBSD's rr_limit N)
  lagglacp multi-speed | -multi-speed | maxports N | -maxports | minports N | -minports
           fast | slow | active | passive | sysprio N | -sysprio | key N | -key
           fallback | -fallback | select stable|bandwidth|count | -select
  laggmonitor [arp ADDR... | -arp] [ns ADDR... | -ns] [interval MS] [missed N]
              [validate all|active|backup] [require any|all] | -laggmonitor
    (link monitor: ARP or neighbour solicitation probes through every port)
  inet ADDR[/LEN] [netmask MASK] [alias | -alias | delete]
  inet6 ADDR[/LEN] [prefixlen N] [alias | -alias | delete]
  ADDR[/LEN] [netmask MASK] ...   (a bare address)
  inet dhcp | inet -dhcp   (the built-in DHCPv4 client; no DHCPv6)
  inet6 slaac | inet6 -slaac   (addresses and routers from IPv6 RAs)
  mtu N | up | down
Options of a VLAN interface vlanN, as NetBSD's vlan(4) (its MTU is its lagg's):
  create | destroy
  vlan N vlanif LAGG | -vlanif   (VLAN ID 1..4094 on that lagg; -vlanif: none)
  inet ... | inet6 ... | inet dhcp | inet -dhcp   (as on a lagg)
All options on one line take effect together or not at all. The socket is
-s, else $ULAGG_SOCKET, else ` + config.DefaultSocket + ".\n"

// shortFlags matches combined single-letter flags such as -av.
var shortFlags = regexp.MustCompile(`^-[alvz]+$`)

func cmdIfconfig(args []string, stdout, stderr io.Writer) error {
	sock := defaultSocket()
	req := appliance.ControlRequest{Cmd: appliance.CmdStatus}
	all := false
	i := 0
	// ulagg's own flags come before the lagg's name; after it, words
	// starting with '-' are ifconfig options (-laggport, -alias).
flags:
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help" || a == "-help":
			fmt.Fprint(stdout, ifconfigUsage)
			return flag.ErrHelp
		case a == "-s":
			if i+1 >= len(args) {
				return fmt.Errorf("%w: -s needs the socket path", errUsage)
			}
			i++
			sock = args[i]
		case a == "--json" || a == "-json":
			req.JSON = true
		case shortFlags.MatchString(a):
			for _, c := range a[1:] {
				switch c {
				case 'a':
					all = true
				case 'l':
					req.Names = true
				case 'v':
					req.Verbose = true
				case 'z':
					req.Zero = true
				}
			}
		case len(a) > 1 && a[0] == '-':
			fmt.Fprint(stderr, ifconfigUsage)
			return fmt.Errorf("%w: unknown flag %s", errUsage, a)
		default:
			break flags
		}
	}
	rest := args[i:]
	switch {
	case len(rest) > 1:
		if all || req.Names || req.Verbose || req.JSON || req.Zero {
			return fmt.Errorf("%w: -a, -l, -v, -z and --json show status; they do not go with options", errUsage)
		}
		cmd, err := config.ParseIfconfig(rest)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		req = appliance.ControlRequest{Cmd: appliance.CmdIfconfig, Args: cmd.Args()}
	case len(rest) == 1:
		if all {
			return fmt.Errorf("%w: -a shows every lagg; give no lagg name with it", errUsage)
		}
		req.Lagg = rest[0]
	}
	resp, err := appliance.ControlCall(sock, req)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, resp.Output)
	return nil
}

// socketFlag parses a command that takes only -s.
func socketFlag(name string, args []string, stderr io.Writer) (string, error) {
	fs := newFlags(name, stderr)
	sock := fs.String("s", defaultSocket(), "control `SOCKET` path")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return *sock, nil
}

func cmdSave(args []string, stdout, stderr io.Writer) error {
	return simpleCall("save", appliance.CmdSave, args, stdout, stderr)
}

// cmdReload prints each change it applied. It refuses to undo runtime
// changes (ulagg ifconfig) that were never saved, listing them, unless
// --force; --dry-run (or ulagg diff) only shows what would change.
func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reload", stderr)
	sock := fs.String("s", defaultSocket(), "control `SOCKET` path")
	force := fs.Bool("force", false, "apply the file even if that undoes runtime changes never saved")
	dry := fs.Bool("dry-run", false, "show what would change, change nothing (as ulagg diff)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return reloadCall(*sock, appliance.ControlRequest{Cmd: appliance.CmdReload, Force: *force, DryRun: *dry}, stdout)
}

// cmdDiff shows the running configuration against the file, applying
// nothing.
func cmdDiff(args []string, stdout, stderr io.Writer) error {
	sock, err := socketFlag("diff", args, stderr)
	if err != nil {
		return err
	}
	return reloadCall(sock, appliance.ControlRequest{Cmd: appliance.CmdReload, DryRun: true}, stdout)
}

func reloadCall(sock string, req appliance.ControlRequest, stdout io.Writer) error {
	resp, err := appliance.ControlCall(sock, req)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, resp.Output)
	return nil
}

func simpleCall(name, cmd string, args []string, stdout, stderr io.Writer) error {
	sock, err := socketFlag(name, args, stderr)
	if err != nil {
		return err
	}
	resp, err := appliance.ControlCall(sock, appliance.ControlRequest{Cmd: cmd})
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, resp.Output)
	return nil
}

func cmdCapture(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("capture", stderr)
	sock := fs.String("s", defaultSocket(), "control `SOCKET` path")
	count := fs.Int("c", 0, "stop after `N` frames (0: until Ctrl-C)")
	file := fs.String("w", "", "write pcap to `FILE` (- for standard output)")
	// Flags may come before or after LAGG and PORT.
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *file == "":
		return fmt.Errorf("%w: -w FILE is required (- for standard output)", errUsage)
	case len(pos) == 0 || len(pos) > 2:
		return fmt.Errorf("%w: want LAGG [PORT], got %d arguments", errUsage, len(pos))
	case *count < 0:
		return fmt.Errorf("%w: -c %d: want a count of 0 or more", errUsage, *count)
	}
	req := appliance.ControlRequest{Lagg: pos[0], Count: *count}
	if len(pos) == 2 {
		req.Port = pos[1]
	}
	stream, err := appliance.StartCapture(*sock, req)
	if err != nil {
		return err
	}
	// Ctrl-C ends the capture: half-closing the stream tells the server,
	// which sends what it still has and how many frames it dropped.
	var interrupted atomic.Bool
	defer onInterrupt(func() {
		interrupted.Store(true)
		if stream.Stop(2*time.Second) != nil {
			stream.Close()
		}
	})()
	defer stream.Close()

	out, name := stdout, "standard output"
	var f *os.File
	if *file != "-" {
		// Captures hold whatever crossed the lagg: owner-only.
		if f, err = os.OpenFile(*file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return err
		}
		defer f.Close()
		out, name = f, *file
	}
	n, err := copyPcap(out, stream)
	if err != nil && !interrupted.Load() && !errors.Is(err, io.EOF) {
		return fmt.Errorf("capture: after %d frames: %w", n, err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "%s captured to %s\n", framesWord(n), name)
	if sum, ok := stream.Summary(); ok && sum.Dropped > 0 {
		fmt.Fprintf(stderr, "%s dropped (the capture could not keep up)\n", framesWord(int(sum.Dropped)))
	}
	return nil
}

// copyPcap re-writes the pcap stream from the appliance to w packet by
// packet, flushing each so that `-w -` can feed a live reader.
func copyPcap(w io.Writer, stream io.Reader) (int, error) {
	r, err := pcapgo.NewReader(stream)
	if err != nil {
		return 0, fmt.Errorf("capture: reading the stream header: %w", err)
	}
	bw := bufio.NewWriter(w)
	pw := pcapgo.NewWriter(bw)
	if err := pw.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n, nil // the appliance ended the stream
		}
		if err != nil {
			return n, err
		}
		if err := pw.WritePacket(ci, data); err != nil {
			return n, err
		}
		if err := bw.Flush(); err != nil {
			return n, err
		}
		n++
	}
}

func framesWord(n int) string {
	if n == 1 {
		return "1 frame"
	}
	return strconv.Itoa(n) + " frames"
}
