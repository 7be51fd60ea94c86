package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	ustack "github.com/ulagg/ulagg/stack"
)

// Route applies one `ulagg route add|delete` to the running appliance: to
// the configuration in force, validated as a whole, then reconciled (all
// or nothing, as Ifconfig). It returns the routes that wait for their
// gateway to be reachable after it.
func (a *Appliance) Route(cmd *config.RouteCommand) (waiting []ustack.Route, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, errors.New("appliance is closed")
	}
	next, err := cmd.Apply(a.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := a.reconcileLocked(next, reconcileOptions{}); err != nil {
		return nil, err
	}
	for _, u := range a.routes.Unresolved() {
		if u.Origin == ustack.RouteStatic {
			waiting = append(waiting, u)
		}
	}
	return waiting, nil
}

// route serves CmdRoute: Args are route(8) words; show honours JSON.
func (s *ControlServer) route(req ControlRequest) ControlResponse {
	cmd, err := config.ParseRoute(req.Args)
	if err != nil {
		return fail(err)
	}
	if cmd.Op == config.RouteShow {
		installed, waiting := s.a.Routes()
		names := nicNames(s.a)
		var b strings.Builder
		if req.JSON {
			out, err := json.MarshalIndent(RoutesJSON(installed, waiting, names, cmd.Family), "", "  ")
			if err != nil {
				return fail(err)
			}
			b.Write(out)
			b.WriteByte('\n')
		} else {
			FormatRoutes(&b, installed, waiting, names, cmd.Family)
		}
		return ControlResponse{OK: true, Output: b.String()}
	}
	waiting, err := s.a.Route(cmd)
	if err != nil {
		s.log.Warn("route refused", "args", cmd.String(), "err", err)
		return fail(err)
	}
	s.log.Info("route", "args", cmd.String())
	var b strings.Builder
	for _, w := range waiting {
		if w.To == cmd.Route.To {
			fmt.Fprintf(&b, "warning: route %s waits: gateway %s is in no subnet of any interface\n", w.To, w.Via)
		}
	}
	return ControlResponse{OK: true, Output: b.String()}
}

func nicNames(a *Appliance) map[tcpip.NICID]string {
	names := map[tcpip.NICID]string{}
	for id, info := range a.s.NICInfo() {
		names[id] = info.Name
	}
	return names
}

// RouteJSON is one row of `ulagg route show --json`.
type RouteJSON struct {
	Family      string `json:"family"` // "inet" or "inet6"
	Destination string `json:"destination"`
	Gateway     string `json:"gateway,omitempty"`
	Flags       string `json:"flags"`
	Interface   string `json:"interface,omitempty"`
	Metric      uint32 `json:"metric"`
	Origin      string `json:"origin"`
	Installed   bool   `json:"installed"`
}

// shownRoute is a route as route show lists it.
type shownRoute struct {
	r  ustack.Route
	up bool
}

// shownRoutes lists the installed routes then the waiting ones, of family
// (4, 6, or 0 for both).
func shownRoutes(installed, waiting []ustack.Route, family int) []shownRoute {
	var out []shownRoute
	for k, rs := range [][]ustack.Route{installed, waiting} {
		for _, r := range rs {
			if family == 0 || famOfPrefix(r.To) == family {
				out = append(out, shownRoute{r, k == 0})
			}
		}
	}
	return out
}

// RoutesJSON lists the installed routes then the waiting ones, of family
// (4, 6, or 0 for both).
func RoutesJSON(installed, waiting []ustack.Route, names map[tcpip.NICID]string, family int) []RouteJSON {
	out := []RouteJSON{}
	for _, sr := range shownRoutes(installed, waiting, family) {
		r := sr.r
		j := RouteJSON{Family: "inet", Destination: r.To.String(), Flags: routeFlags(r, sr.up), Metric: r.Metric, Origin: string(r.Origin), Installed: sr.up}
		if sr.up {
			j.Interface = names[r.NIC]
		}
		if r.To.Addr().Is6() {
			j.Family = "inet6"
		}
		if r.Via.IsValid() {
			j.Gateway = r.Via.String()
		}
		out = append(out, j)
	}
	return out
}

func famOfPrefix(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// routeFlags are netstat -rn's: U up (installed), G via a gateway, H a
// host route, S static, D dynamic (DHCP, router advertisement), C
// connected.
func routeFlags(r ustack.Route, up bool) string {
	var f []byte
	if up {
		f = append(f, 'U')
	}
	if r.Via.IsValid() {
		f = append(f, 'G')
	}
	if r.To.Bits() == r.To.Addr().BitLen() {
		f = append(f, 'H')
	}
	switch r.Origin {
	case ustack.RouteStatic:
		f = append(f, 'S')
	case ustack.RouteDHCP, ustack.RouteRA:
		f = append(f, 'D')
	case ustack.RouteConnected:
		f = append(f, 'C')
	}
	return string(f)
}

// FormatRoutes writes the table as netstat -rn does, one section per
// family: Destination Gateway Flags Netif Metric, plus the origin. An
// on-link route's gateway is link#NIC; a waiting route has no U and "-"
// as its interface.
func FormatRoutes(w io.Writer, installed, waiting []ustack.Route, names map[tcpip.NICID]string, family int) {
	rows := shownRoutes(installed, waiting, family)
	fmt.Fprintln(w, "Routing tables")
	for _, fam := range []struct {
		v     int
		title string
	}{{4, "Internet"}, {6, "Internet6"}} {
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		n := 0
		for _, sr := range rows {
			r := sr.r
			if famOfPrefix(r.To) != fam.v {
				continue
			}
			if n == 0 {
				fmt.Fprintf(w, "\n%s:\n", fam.title)
				fmt.Fprintln(tw, "Destination\tGateway\tFlags\tNetif\tMetric\tOrigin")
			}
			n++
			dst := r.To.String()
			if r.To.Bits() == 0 {
				dst = "default"
			}
			gw := "link#" + strconv.Itoa(int(r.NIC))
			if r.Via.IsValid() {
				gw = r.Via.String()
			}
			ifn := names[r.NIC]
			if !sr.up || ifn == "" {
				ifn = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", dst, gw, routeFlags(r, sr.up), ifn, r.Metric, r.Origin)
		}
		tw.Flush()
	}
}
