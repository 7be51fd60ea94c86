package appliance

import "log/slog"

// SetNoRouteLogger sends a's no-route lines (noroute.go) to log; a test
// calls it before it sends the traffic that logs.
func SetNoRouteLogger(a *Appliance, log *slog.Logger) { a.noRoute.log = log }
