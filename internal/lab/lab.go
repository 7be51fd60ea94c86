// Package lab builds throwaway network topologies for the demo and the
// integration tests: network namespaces, veth pairs and bridges made with
// iproute2, and helpers to open sockets inside a namespace. Everything a Lab
// creates carries its prefix and is deleted by Close, also after a failure.
package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
)

// Lab tracks the namespaces it created.
type Lab struct {
	Prefix string

	mu sync.Mutex
	// +checklocks:mu
	nss []string
}

// New returns a lab whose namespaces are named prefix+"-"+name. Leftovers
// of an earlier run with the same prefix (a crash, a kill -9) are removed.
func New(prefix string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("the ip command (iproute2) is required")
	}
	l := &Lab{Prefix: prefix}
	l.removeLeftovers()
	return l, nil
}

func (l *Lab) removeLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], l.Prefix+"-") {
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}

// NS returns the full name of namespace name.
func (l *Lab) NS(name string) string { return l.Prefix + "-" + name }

// AddNS creates namespace name with loopback up and IPv6 disabled on every
// interface (router solicitations and MLD would only add noise).
func (l *Lab) AddNS(name string) (string, error) {
	ns := l.NS(name)
	if err := Run("ip", "netns", "add", ns); err != nil {
		return "", err
	}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	for _, args := range [][]string{
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
		{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"},
	} {
		if err := Run(args...); err != nil {
			return ns, err
		}
	}
	return ns, nil
}

// Veth creates a veth pair a (in namespace nsA) and b (in nsB), both up.
func (l *Lab) Veth(a, nsA, b, nsB string) error {
	if err := Run("ip", "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB); err != nil {
		return err
	}
	if err := Run("ip", "-n", nsA, "link", "set", a, "up"); err != nil {
		return err
	}
	return Run("ip", "-n", nsB, "link", "set", b, "up")
}

// NICVeth is Veth with both ends given ifindex index (free in both
// namespaces): the kernel then reports each end's carrier changes through
// its link watcher, batched up to a second apart, as it does for a
// physical NIC; a veth pair with unequal indexes gets them at once.
func (l *Lab) NICVeth(a, nsA, b, nsB string, index int) error {
	idx := strconv.Itoa(index)
	if err := Run("ip", "-n", nsA, "link", "add", a, "index", idx, "type", "veth", "peer", "name", b, "index", idx, "netns", nsB); err != nil {
		return err
	}
	if err := Run("ip", "-n", nsA, "link", "set", a, "up"); err != nil {
		return err
	}
	return Run("ip", "-n", nsB, "link", "set", b, "up")
}

// Bridge creates bridge br in ns over ports, with addr (CIDR) on it, no STP
// and no forwarding delay, so it forwards at once.
func (l *Lab) Bridge(ns, br, addr string, ports ...string) error {
	cmds := [][]string{
		{"ip", "-n", ns, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"ip", "-n", ns, "link", "set", br, "up"},
	}
	for _, p := range ports {
		cmds = append(cmds, []string{"ip", "-n", ns, "link", "set", p, "master", br})
	}
	if addr != "" {
		cmds = append(cmds, []string{"ip", "-n", ns, "addr", "add", addr, "dev", br})
	}
	for _, c := range cmds {
		if err := Run(c...); err != nil {
			return err
		}
	}
	return nil
}

// Close deletes every namespace the lab created (and with them their
// interfaces). It reports the first failure but tries them all.
func (l *Lab) Close() error {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	var first error
	for i := len(nss) - 1; i >= 0; i-- {
		if err := Run("ip", "netns", "del", nss[i]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Run runs a command and returns its combined output in the error.
func Run(args ...string) error {
	_, err := Output(args...)
	return err
}

// Output runs a command and returns its standard output.
func Output(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Do runs fn on an OS thread switched into namespace ns. Sockets fn creates
// stay in ns for their whole life, whichever thread uses them later.
func Do(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is unusable; keep it locked so Go retires it.
		runtime.LockOSThread()
		return errors.Join(ferr, fmt.Errorf("leave netns %s: %w", ns, err))
	}
	return ferr
}

// Dial connects from inside namespace ns.
func Dial(ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() (err error) {
		c, err = net.Dial(network, addr)
		return err
	})
	return c, err
}

// Listen listens inside namespace ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside namespace ns.
func ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := Do(ns, func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}
