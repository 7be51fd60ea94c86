package appliance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// statusHandler is the http-status service: a health check for load
// balancers and monitors, which reach it over the network.
//
//	GET /healthz        200 "ok: N laggs up" when every lagg is up (link
//	                    up and administratively up), else 503
//	                    "down: K of N laggs"
//	GET /healthz/LAGG   200 "ok: LAGG up" or 503 "down: LAGG"; 404 for a
//	                    lagg that does not exist
//
// Anything else is 404 (405 for a method other than GET and HEAD). With
// details (the service's details = true), GET / also serves every lagg's
// full status as JSON, as `ulagg ifconfig --json` shows it: MACs, port
// names, LACP partners and keys, which is why it is off by default.
func statusHandler(a *Appliance, details bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			plain(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		path := r.URL.Path
		switch {
		case path == "/healthz":
			sts := a.Status()
			down := 0
			for _, st := range sts {
				if !laggHealthy(st) {
					down++
				}
			}
			if down > 0 {
				plain(w, http.StatusServiceUnavailable, fmt.Sprintf("down: %d of %d laggs", down, len(sts)))
				return
			}
			plain(w, http.StatusOK, fmt.Sprintf("ok: %d laggs up", len(sts)))
		case strings.HasPrefix(path, "/healthz/"):
			name := strings.TrimPrefix(path, "/healthz/")
			for _, st := range a.Status() {
				if st.Name != name {
					continue
				}
				if !laggHealthy(st) {
					plain(w, http.StatusServiceUnavailable, "down: "+name)
					return
				}
				plain(w, http.StatusOK, "ok: "+name+" up")
				return
			}
			plain(w, http.StatusNotFound, "no such lagg")
		case details && path == "/":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(StatusJSON(a.Status()))
		default:
			plain(w, http.StatusNotFound, "not found")
		}
	})
}

// laggHealthy: the lagg carries traffic (its link is up) and is not
// administratively down.
func laggHealthy(st LaggStatus) bool { return st.Up && st.AdminUp }

// plain writes a one-line text answer.
func plain(w http.ResponseWriter, code int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, line)
}
