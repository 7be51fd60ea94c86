package appliance

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ulagg/ulagg/config"
)

// The control protocol: the client sends one ControlRequest as a JSON
// line; the server answers with one ControlResponse as a JSON line and
// closes. For capture, a response with OK set is followed by a pcap stream
// (Ethernet link type) that ends when Count frames were sent, the client
// closes or half-closes the connection, or the server stops; then comes an
// end record (a CaptureSummary: frames sent, frames dropped because the
// client did not keep up), which StartCapture's stream reads for the
// client (see control_capture.go). For monitor, the OK response is
// followed by events as JSON lines, the last of kind "end"
// (control_monitor.go).
const (
	CmdIfconfig = "ifconfig" // Args: LAGG OPTION... (NetBSD ifconfig syntax)
	CmdStatus   = "status"   // Lagg ("" = every lagg), Verbose, JSON, Names
	CmdSave     = "save"     // write the running configuration to the file
	CmdReload   = "reload"   // re-read the file, apply the difference
	CmdCapture  = "capture"  // Lagg, Port ("" = every port), Count
	CmdRoute    = "route"    // Args: add|delete|show ... (NetBSD route(8) syntax); JSON for show
)

// ControlRequest is one request on the control socket.
type ControlRequest struct {
	Cmd     string   `json:"cmd"`
	Args    []string `json:"args,omitempty"`
	Lagg    string   `json:"lagg,omitempty"`
	Port    string   `json:"port,omitempty"`
	Count   int      `json:"count,omitempty"`
	Verbose bool     `json:"verbose,omitempty"`
	JSON    bool     `json:"json,omitempty"`
	Names   bool     `json:"names,omitempty"`
	// Reload: Force discards runtime changes never saved; DryRun only
	// reports what would change (ulagg diff).
	Force  bool `json:"force,omitempty"`
	DryRun bool `json:"dry_run,omitempty"`
	// Zero: status, then zero the counters shown (ifconfig -z).
	Zero bool `json:"zero,omitempty"`
}

// ControlResponse answers a request. Output is text for the user.
type ControlResponse struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
}

// Limits of the control protocol.
const (
	maxRequest     = 1 << 20
	requestTimeout = 10 * time.Second
)

// ControlOptions configure ListenControl.
type ControlOptions struct {
	// Path is the socket's path; its directory is created (0700) if missing.
	Path string
	// ConfigFile is the file that save writes and reload reads; "" refuses
	// both.
	ConfigFile string
	// Reload replaces the default reload (Appliance.ReloadFileWith of
	// ConfigFile), so that a runtime can share its SIGHUP handling.
	Reload func(ReloadOptions) (ReloadResult, error)
	// KindOf names the kind of a port new to the configuration
	// (config.IfconfigCommand.Apply); nil means afpacket.
	KindOf func(name string) string
	Logger *slog.Logger
	// Group (a name or a gid) makes the socket 0660 in that group, whose
	// members may read: status, monitor, hash (control_roles.go).
	Group string

	// accept replaces ln.AcceptUnix, for tests that inject errors.
	accept func(ln *net.UnixListener) (*net.UnixConn, error)
}

// Limits of the accept loop: concurrent connections (one more is answered
// with an error and closed), and the back-off after an accept error.
const (
	maxControlConns  = 64
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	acceptLogEvery   = 10 * time.Second // accept errors and refusals: one line per cause and period
)

// ControlServer serves the control socket. Every command goes through the
// Appliance's methods, which are serialised.
type ControlServer struct {
	a    *Appliance
	opts ControlOptions
	log  *slog.Logger
	ln   *net.UnixListener
	self uint32 // the uid allowed besides root
	done chan struct{}
	wg   sync.WaitGroup

	policy rolePolicy // who may do what (control_roles.go)

	mu sync.Mutex
	// +checklocks:mu
	conns map[net.Conn]struct{}
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	captures int // running captures (at most maxCaptures)
	// +checklocks:mu
	monitors int // running monitors (at most maxMonitors, control_monitor.go)
}

// ListenControl creates the control socket, owner-only (0600; 0660 in
// ControlOptions.Group when set), and serves
// it until Close. A stale socket file is replaced; a live one (another
// ulagg answering) is an error, as is a path that is not a socket.
func ListenControl(a *Appliance, opts ControlOptions) (*ControlServer, error) {
	if opts.Path == "" {
		return nil, errors.New("control socket: no path")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	gid := int64(-1)
	if opts.Group != "" {
		var err error
		if gid, err = lookupGroup(opts.Group); err != nil {
			return nil, err
		}
	}
	createdDir := ""
	if dir := filepath.Dir(opts.Path); gid >= 0 {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			createdDir = dir
		}
	}
	if err := prepareSocketPath(opts.Path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Connections made before the chmod are still checked by SO_PEERCRED.
	if err := os.Chmod(opts.Path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := shareSocket(opts.Path, gid, createdDir); err != nil {
		ln.Close()
		return nil, err
	}
	s := &ControlServer{
		a: a, opts: opts, log: log, ln: ln,
		self:  uint32(os.Geteuid()),
		done:  make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}
	s.policy = rolePolicy{self: s.self, group: gid}
	s.wg.Add(1)
	go s.routineAccept()
	log.Info("control socket listening", "path", opts.Path)
	return s, nil
}

func prepareSocketPath(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("control socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("control socket: %s exists and is not a socket; not touching it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket: another ulagg is already listening on %s", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("control socket: removing the stale socket: %w", err)
	}
	return nil
}

// Path returns the socket's path.
func (s *ControlServer) Path() string { return s.opts.Path }

// Close stops serving, ends running captures, waits for every connection's
// goroutine and removes the socket file. It is idempotent.
func (s *ControlServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close() // also removes the socket file
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// routineAccept serves connections until Close. An accept error (EMFILE,
// ENFILE, ECONNABORTED, ...) does not stop it: it waits (5 ms, doubling up
// to 1 s, reset by the next success) and tries again, logging once per
// period with the count of errors since. Beyond maxControlConns open
// connections a new one gets a short error and is closed.
func (s *ControlServer) routineAccept() {
	defer s.wg.Done()
	accept := s.opts.accept
	if accept == nil {
		accept = (*net.UnixListener).AcceptUnix
	}
	var (
		backoff  time.Duration
		errs     = logEvery{every: acceptLogEvery}
		refusals = logEvery{every: acceptLogEvery}
	)
	for {
		c, err := accept(s.ln)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				s.log.Error("control socket: the listener was closed; the control socket stops", "err", err)
				return
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			if n, ok := errs.tick(); ok {
				s.log.Warn("control socket: accept failed; retrying", "err", err, "retry_in", backoff, "similar_suppressed", n)
			}
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if backoff != 0 {
			s.log.Info("control socket: accepting again", "errors_not_logged", errs.flush())
			backoff = 0
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.conns) >= maxControlConns {
			s.mu.Unlock()
			if n, ok := refusals.tick(); ok {
				s.log.Warn("control socket: too many connections; refusing", "max", maxControlConns, "similar_suppressed", n)
			}
			refuseConn(c)
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.routineConn(c)
	}
}

// refuseConn answers a connection beyond the cap and closes it. The answer
// is small and the connection new, so the write goes to the socket buffer;
// the deadline covers a peer that is somehow not reading.
func refuseConn(c *net.UnixConn) {
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	writeResponse(c, ControlResponse{Error: fmt.Sprintf("busy: %d control connections are open, the most ulagg serves at once; try again", maxControlConns)})
	c.Close()
}

// logEvery passes one event per period and counts the rest; one goroutine
// uses it.
type logEvery struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

// tick records an event; ok says whether to log it, with n the events not
// logged since the last one that was.
func (l *logEvery) tick() (n int, ok bool) {
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return 0, false
	}
	n, l.suppressed, l.last = l.suppressed, 0, now
	return n, true
}

// flush returns and clears the count of events not logged.
func (l *logEvery) flush() int {
	n := l.suppressed
	l.suppressed = 0
	return n
}

func (s *ControlServer) routineConn(c *net.UnixConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	cred, err := peerCredOf(c)
	peerRole := s.policy.roleOf(cred)
	if err != nil || peerRole == roleNone {
		msg := s.policy.refusal(roleNone, ControlRequest{}, s.opts.Path).Error()
		if err != nil {
			msg = fmt.Sprintf("permission denied: cannot read the peer's credentials: %v", err)
		}
		s.log.Warn("control socket: connection refused", "uid", cred.uid, "err", err)
		writeResponse(c, ControlResponse{Error: msg})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReader(io.LimitReader(c, maxRequest+1))
	line, err := r.ReadBytes('\n')
	if len(line) > maxRequest {
		err = fmt.Errorf("request longer than %d bytes", maxRequest)
	} else if errors.Is(err, io.EOF) && len(line) > 0 {
		err = nil // a request without its newline
	}
	if err != nil {
		writeResponse(c, ControlResponse{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var req ControlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		writeResponse(c, ControlResponse{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	if !peerRole.allows(req) {
		s.log.Warn("control socket: command refused", "uid", cred.uid, "role", peerRole, "cmd", req.Cmd)
		writeResponse(c, fail(s.policy.refusal(peerRole, req, s.opts.Path)))
		return
	}
	if req.Cmd == CmdCapture {
		s.capture(c, req)
		return
	}
	if req.Cmd == CmdMonitor {
		s.monitor(c, req)
		return
	}
	writeResponse(c, s.handle(req))
}

func writeResponse(w io.Writer, resp ControlResponse) {
	b, _ := json.Marshal(resp) // a struct of strings always marshals
	_, _ = w.Write(append(b, '\n'))
}

func fail(err error) ControlResponse { return ControlResponse{Error: err.Error()} }

// handle runs every command except capture.
func (s *ControlServer) handle(req ControlRequest) ControlResponse {
	switch req.Cmd {
	case CmdIfconfig:
		cmd, err := config.ParseIfconfig(req.Args)
		if err != nil {
			return fail(err)
		}
		if err := s.a.Ifconfig(cmd, s.opts.KindOf); err != nil {
			s.log.Warn("ifconfig refused", "args", cmd.String(), "err", err)
			return fail(err)
		}
		s.log.Info("ifconfig", "args", cmd.String())
		return ControlResponse{OK: true}
	case CmdStatus:
		out, err := s.status(req)
		if err != nil {
			return fail(err)
		}
		if req.Zero { // after the status, as NetBSD's ifconfig -z
			if err := s.a.ZeroCounters(req.Lagg); err != nil {
				return fail(err)
			}
			s.log.Info("counters zeroed", "lagg", req.Lagg)
		}
		return ControlResponse{OK: true, Output: out}
	case CmdHash:
		return s.hash(req)
	case CmdSave:
		if s.opts.ConfigFile == "" {
			return fail(errors.New("save: ulagg runs without a configuration file"))
		}
		res, err := s.a.Save(s.opts.ConfigFile)
		if err != nil {
			return fail(err)
		}
		if !res.Written {
			return ControlResponse{OK: true, Output: fmt.Sprintf("%s already holds the running configuration; left as it is\n", s.opts.ConfigFile)}
		}
		s.log.Info("running configuration saved", "file", res.Path, "backup", res.Backup)
		return ControlResponse{OK: true, Output: fmt.Sprintf("saved the running configuration to %s\n", s.opts.ConfigFile)}
	case CmdReload:
		reload := s.opts.Reload
		if reload == nil {
			if s.opts.ConfigFile == "" {
				return fail(errors.New("reload: ulagg runs without a configuration file"))
			}
			reload = func(o ReloadOptions) (ReloadResult, error) { return s.a.ReloadFileWith(s.opts.ConfigFile, o) }
		}
		res, err := reload(ReloadOptions{Force: req.Force, DryRun: req.DryRun})
		if err != nil {
			return fail(err)
		}
		return ControlResponse{OK: true, Output: res.Text(s.opts.ConfigFile)}
	case CmdRoute:
		return s.route(req)
	}
	return fail(fmt.Errorf("unknown command %q", req.Cmd))
}

// status renders `ulagg ifconfig [-a] [-v] [--json] [-l] [LAGG]`.
func (s *ControlServer) status(req ControlRequest) (string, error) {
	if out, ok, err := s.vlanStatus(req); ok { // status_vlan.go
		return out, err
	}
	sts := s.a.Status()
	if req.Lagg != "" {
		var one []LaggStatus
		for _, st := range sts {
			if st.Name == req.Lagg {
				one = append(one, st)
			}
		}
		if len(one) == 0 {
			return "", fmt.Errorf("%s: no such lagg", req.Lagg)
		}
		sts = one
	}
	var b strings.Builder
	switch {
	case req.JSON:
		js := make([]LaggJSON, 0, len(sts))
		cfg := s.a.Config()
		for _, st := range sts {
			j := st.JSON(req.Verbose)
			if req.Verbose {
				s.a.addVerbose(&j, cfg.Lagg(st.Name))
			}
			js = append(js, j)
		}
		out, err := json.MarshalIndent(s.withVLANs(js, req), "", "  ") // status_vlan.go
		if err != nil {
			return "", err
		}
		b.Write(out)
		b.WriteByte('\n')
	case req.Names:
		names := make([]string, len(sts))
		for i, st := range sts {
			names[i] = st.Name
		}
		if req.Lagg == "" {
			names = append(names, s.a.vlanNames()...) // status_vlan.go
		}
		b.WriteString(strings.Join(names, " ") + "\n")
	default:
		cfg := s.a.Config()
		for _, st := range sts {
			FormatStatus(&b, st, cfg.Lagg(st.Name), FormatOptions{Verbose: req.Verbose})
		}
		if req.Lagg == "" {
			s.formatVLANs(&b, req) // status_vlan.go
		}
		if req.Verbose {
			formatDrops(&b, s.a)
		}
	}
	return b.String(), nil
}

// peerAllowed: the socket is owner-only; root may always manage it.
func peerAllowed(peer, self uint32) bool { return peer == self || peer == 0 }
