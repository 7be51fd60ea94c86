package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/ulagg/ulagg/config"
)

// services runs the built-in responders. The appliance calls apply and close
// with its own lock held (apply) or not (close); services has its own lock
// for the set of running services.
type services struct {
	mu sync.Mutex
	// +checklocks:mu
	a *Appliance
	// +checklocks:mu
	running map[config.Service]*service
}

func newServices(a *Appliance) *services {
	return &services{a: a, running: map[config.Service]*service{}}
}

// service is one listener and the connections it accepted.
type service struct {
	cfg    config.Service
	ln     net.Listener   // TCP kinds
	pc     net.PacketConn // UDP kinds
	http   *http.Server
	wg     sync.WaitGroup
	connMu sync.Mutex
	// +checklocks:connMu
	conns map[net.Conn]struct{}
	// +checklocks:connMu
	stopping bool // accepted connections are closed at once
}

// apply starts the services in want that are not running and stops the
// ones that are no longer wanted; nics maps each lagg to its NIC.
func (ss *services) apply(want []config.Service, nics map[string]tcpip.NICID) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	keep := map[config.Service]bool{}
	for _, c := range want {
		keep[c] = true
	}
	for c, svc := range ss.running {
		if !keep[c] {
			svc.stop()
			delete(ss.running, c)
		}
	}
	for _, c := range want {
		if ss.running[c] != nil {
			continue
		}
		svc, err := ss.start(c, nics)
		if err != nil {
			return fmt.Errorf("service %s on port %d: %w", c.Kind, c.Port, err)
		}
		ss.running[c] = svc
	}
	return nil
}

// start listens for c. A service restricted to one lagg binds to its NIC;
// otherwise it listens on every address, IPv4 and IPv6 (a dual-stack
// IPv6 endpoint).
//
// +checklocks:ss.mu
func (ss *services) start(c config.Service, nics map[string]tcpip.NICID) (*service, error) {
	addr := tcpip.FullAddress{Port: c.Port}
	if c.Lagg != "" {
		nic, ok := nics[c.Lagg]
		if !ok {
			return nil, fmt.Errorf("no lagg %s", c.Lagg)
		}
		addr.NIC = nic
	}
	svc := &service{cfg: c, conns: map[net.Conn]struct{}{}}
	switch c.Kind {
	case "udp-echo":
		pc, err := gonet.DialUDP(ss.a.s, &addr, nil, ipv6.ProtocolNumber)
		if err != nil {
			return nil, err
		}
		svc.pc = pc
		svc.wg.Add(1)
		go svc.routineUDPEcho()
	case "tcp-echo", "tcp-discard", "http-status":
		ln, err := gonet.ListenTCP(ss.a.s, addr, ipv6.ProtocolNumber)
		if err != nil {
			return nil, err
		}
		svc.ln = ln
		svc.wg.Add(1)
		if c.Kind == "http-status" {
			svc.http = &http.Server{Handler: statusHandler(ss.a), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				defer svc.wg.Done()
				_ = svc.http.Serve(ln)
			}()
		} else {
			go svc.routineAccept()
		}
	default:
		return nil, fmt.Errorf("unknown service kind %q", c.Kind)
	}
	ss.a.log.Info("service started", "kind", c.Kind, "port", c.Port, "lagg", c.Lagg)
	return svc, nil
}

func (ss *services) close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for c, svc := range ss.running {
		svc.stop()
		delete(ss.running, c)
	}
}

func (svc *service) stop() {
	switch {
	case svc.http != nil:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = svc.http.Shutdown(ctx)
		cancel()
		_ = svc.http.Close()
	case svc.ln != nil:
		_ = svc.ln.Close()
	case svc.pc != nil:
		_ = svc.pc.Close()
	}
	svc.connMu.Lock()
	svc.stopping = true
	for c := range svc.conns {
		_ = c.Close()
	}
	svc.connMu.Unlock()
	svc.wg.Wait()
}

func (svc *service) routineAccept() {
	defer svc.wg.Done()
	for {
		c, err := svc.ln.Accept()
		if err != nil {
			return
		}
		svc.connMu.Lock()
		if svc.stopping {
			// Accepted as stop closed the listener: stop has already
			// closed the connections it knows, and waits.
			svc.connMu.Unlock()
			_ = c.Close()
			return
		}
		svc.conns[c] = struct{}{}
		svc.wg.Add(1)
		svc.connMu.Unlock()
		go svc.routineConn(c)
	}
}

func (svc *service) routineConn(c net.Conn) {
	defer svc.wg.Done()
	defer func() {
		svc.connMu.Lock()
		delete(svc.conns, c)
		svc.connMu.Unlock()
		_ = c.Close()
	}()
	if svc.cfg.Kind == "tcp-echo" {
		_, _ = io.Copy(c, c)
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

func (svc *service) routineUDPEcho() {
	defer svc.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := svc.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		_, _ = svc.pc.WriteTo(buf[:n], from)
	}
}

// statusHandler serves the appliance's status as JSON (the http-status
// service), for health checks from the network.
func statusHandler(a *Appliance) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := StatusJSON(a.Status())
		w.Header().Set("Content-Type", "application/json")
		code := http.StatusOK
		for _, l := range st {
			if !l.Up {
				code = http.StatusServiceUnavailable
			}
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(st)
	})
}
