package appliance

import ustack "github.com/ulagg/ulagg/stack"

// dRoutes counts the installed routes by origin and family; every
// combination is sent, zero included, so that a series never vanishes
// (a dashboard's "no default route" alarm needs the zero).
var dRoutes = desc("routes", "Routes installed in the IP stack, by origin (connected, static, dhcp, ra) and family (inet, inet6).", "origin", "family")

// routeOrigins are every origin, in ulagg route show's order.
var routeOrigins = [...]ustack.RouteOrigin{ustack.RouteConnected, ustack.RouteStatic, ustack.RouteDHCP, ustack.RouteRA}

// collectRoutes sends dRoutes.
func collectRoutes(m metricSink, a *Appliance) {
	installed, _ := a.Routes()
	var n [len(routeOrigins)][2]int // [origin][inet, inet6]
	for _, r := range installed {
		for i, o := range routeOrigins {
			if r.Origin == o {
				n[i][famOfPrefix(r.To)/6]++ // 4/6 = 0, 6/6 = 1
			}
		}
	}
	for i, o := range routeOrigins {
		m.gauge(dRoutes, float64(n[i][0]), string(o), "inet")
		m.gauge(dRoutes, float64(n[i][1]), string(o), "inet6")
	}
}
