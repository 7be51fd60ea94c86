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

	"golang.org/x/sys/unix"

	"github.com/ulagg/ulagg/config"
)

// The control protocol: the client sends one ControlRequest as a JSON
// line; the server answers with one ControlResponse as a JSON line and
// closes. For capture, a response with OK set is followed by a pcap stream
// (Ethernet link type) that ends when Count frames were sent, the client
// closes the connection, or the server stops.
const (
	CmdIfconfig = "ifconfig" // Args: LAGG OPTION... (NetBSD ifconfig syntax)
	CmdStatus   = "status"   // Lagg ("" = every lagg), Verbose, JSON, Names
	CmdSave     = "save"     // write the running configuration to the file
	CmdReload   = "reload"   // re-read the file, apply the difference
	CmdCapture  = "capture"  // Lagg, Port ("" = every port), Count
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
	captureQueue   = 4096
	captureSnaplen = 262144
)

// ControlOptions configure ListenControl.
type ControlOptions struct {
	// Path is the socket's path; its directory is created (0700) if missing.
	Path string
	// ConfigFile is the file that save writes and reload reads; "" refuses
	// both.
	ConfigFile string
	// Reload replaces the default reload (Appliance.ReloadFile of
	// ConfigFile), so that a runtime can share its SIGHUP handling.
	Reload func() error
	// KindOf names the kind of a port new to the configuration
	// (config.IfconfigCommand.Apply); nil means afpacket.
	KindOf func(name string) string
	Logger *slog.Logger
}

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

	mu sync.Mutex
	// +checklocks:mu
	conns map[net.Conn]struct{}
	// +checklocks:mu
	closed bool
}

// ListenControl creates the control socket, owner-only (0600), and serves
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
	s := &ControlServer{
		a: a, opts: opts, log: log, ln: ln,
		self:  uint32(os.Geteuid()),
		done:  make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}
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

func (s *ControlServer) routineAccept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.done:
			default:
				s.log.Error("control socket: accept failed; the control socket stops", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.routineConn(c)
	}
}

func (s *ControlServer) routineConn(c *net.UnixConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	if uid, err := peerUID(c); err != nil || !peerAllowed(uid, s.self) {
		msg := fmt.Sprintf("permission denied: only uid %d (the owner of the ulagg process) and root may use %s", s.self, s.opts.Path)
		if err != nil {
			msg = fmt.Sprintf("permission denied: cannot read the peer's credentials: %v", err)
		}
		s.log.Warn("control socket: connection refused", "uid", uid, "err", err)
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
	if req.Cmd == CmdCapture {
		s.capture(c, req)
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
		return ControlResponse{OK: true, Output: out}
	case CmdSave:
		if s.opts.ConfigFile == "" {
			return fail(errors.New("save: ulagg runs without a configuration file"))
		}
		if err := s.a.SaveFile(s.opts.ConfigFile); err != nil {
			return fail(err)
		}
		s.log.Info("running configuration saved", "file", s.opts.ConfigFile)
		return ControlResponse{OK: true, Output: fmt.Sprintf("saved the running configuration to %s\n", s.opts.ConfigFile)}
	case CmdReload:
		reload := s.opts.Reload
		if reload == nil {
			if s.opts.ConfigFile == "" {
				return fail(errors.New("reload: ulagg runs without a configuration file"))
			}
			reload = func() error { return s.a.ReloadFile(s.opts.ConfigFile) }
		}
		if err := reload(); err != nil {
			return fail(err)
		}
		return ControlResponse{OK: true, Output: fmt.Sprintf("reloaded %s\n", s.opts.ConfigFile)}
	}
	return fail(fmt.Errorf("unknown command %q", req.Cmd))
}

// status renders `ulagg ifconfig [-a] [-v] [--json] [-l] [LAGG]`.
func (s *ControlServer) status(req ControlRequest) (string, error) {
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
		out, err := json.MarshalIndent(StatusJSON(sts), "", "  ")
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
		b.WriteString(strings.Join(names, " ") + "\n")
	default:
		cfg := s.a.Config()
		for _, st := range sts {
			FormatStatus(&b, st, cfg.Lagg(st.Name), FormatOptions{Verbose: req.Verbose})
		}
	}
	return b.String(), nil
}

// peerUID returns the uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return cred.Uid, nil
}

// peerAllowed: the socket is owner-only; root may always manage it.
func peerAllowed(peer, self uint32) bool { return peer == self || peer == 0 }
