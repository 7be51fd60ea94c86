package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/stack/appliance"
)

func init() {
	commands = append(commands,
		command{"route", "[-s SOCKET] [--json] [show [-inet|-inet6] | add|delete ROUTE]", "show or change the stack's routes, NetBSD route(8) syntax", cmdRoute},
	)
}

const routeUsage = `usage: ulagg route [-s SOCKET] [-n] [--json] [show [-inet|-inet6]]
       ulagg route [-s SOCKET] add|delete [-net|-host] [-inet|-inet6] DEST [GATEWAY]
                   [-netmask MASK | -prefixlen N] [-ifp IF] [-metric N]

show (the default) prints the route table as netstat -rn does, --json as
JSON. DEST is default, a prefix (10.0.0.0/8) or an address; GATEWAY an
address in a subnet of a lagg (or -ifp IF for an on-link route).
Examples:
  ulagg route add default 192.168.1.254
  ulagg route add -net 10.0.0.0/8 192.168.1.254
  ulagg route add -inet6 default fd00::1
  ulagg route delete default 192.168.1.254
Routes added here are runtime changes: ulagg save writes them as [[route]].
The socket is -s, else $ULAGG_SOCKET, else ` + config.DefaultSocket + ".\n"

func cmdRoute(args []string, stdout, stderr io.Writer) error {
	sock := defaultSocket()
	json := false
	i := 0
	// ulagg's flags come before the verb; after it, words starting with
	// '-' are route(8) options (-net, -inet6).
flags:
	for ; i < len(args); i++ {
		switch a := args[i]; a {
		case "-h", "--help", "-help":
			fmt.Fprint(stdout, routeUsage)
			return flag.ErrHelp
		case "-s":
			if i+1 >= len(args) {
				return fmt.Errorf("%w: -s needs the socket path", errUsage)
			}
			i++
			sock = args[i]
		case "--json", "-json":
			json = true
		case "-n", "-rn": // netstat -rn habit: addresses are always numeric
		default:
			if len(a) > 1 && a[0] == '-' {
				fmt.Fprint(stderr, routeUsage)
				return fmt.Errorf("%w: unknown flag %s", errUsage, a)
			}
			break flags
		}
	}
	words := args[i:]
	if len(words) == 0 {
		words = []string{config.RouteShow}
	}
	cmd, err := config.ParseRoute(words)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if json && cmd.Op != config.RouteShow {
		return fmt.Errorf("%w: --json goes with show", errUsage)
	}
	resp, err := appliance.ControlCall(sock, appliance.ControlRequest{Cmd: appliance.CmdRoute, Args: words, JSON: json})
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, resp.Output)
	return nil
}
