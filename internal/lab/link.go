package lab

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// LinkInfo is what `ip -j -d link show` reports about an interface, reduced
// to what tests compare before and after an appliance ran.
type LinkInfo struct {
	Name        string
	Index       int
	MTU         int
	MAC         string
	AdminUp     bool   // IFF_UP
	LowerUp     bool   // carrier (IFF_LOWER_UP)
	OperState   string // UP, DOWN, UNKNOWN, LOWERLAYERDOWN...
	Promiscuity int
	Master      string
	Kind        string // veth, bridge, tun... ("" for plain devices)
}

type ipLink struct {
	Ifindex     int      `json:"ifindex"`
	Ifname      string   `json:"ifname"`
	Flags       []string `json:"flags"`
	MTU         int      `json:"mtu"`
	OperState   string   `json:"operstate"`
	Address     string   `json:"address"`
	Promiscuity int      `json:"promiscuity"`
	Master      string   `json:"master"`
	LinkInfo    struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func (l ipLink) info() LinkInfo {
	return LinkInfo{
		Name:        l.Ifname,
		Index:       l.Ifindex,
		MTU:         l.MTU,
		MAC:         l.Address,
		AdminUp:     slices.Contains(l.Flags, "UP"),
		LowerUp:     slices.Contains(l.Flags, "LOWER_UP"),
		OperState:   l.OperState,
		Promiscuity: l.Promiscuity,
		Master:      l.Master,
		Kind:        l.LinkInfo.Kind,
	}
}

// Links lists the interfaces of namespace ns ("" for the caller's).
func Links(ns string) ([]LinkInfo, error) {
	args := []string{"ip", "-j", "-d"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out, err := Output(append(args, "link", "show")...)
	if err != nil {
		return nil, err
	}
	var raw []ipLink
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("ip -j link show: %w", err)
	}
	infos := make([]LinkInfo, len(raw))
	for i, l := range raw {
		infos[i] = l.info()
	}
	return infos, nil
}

// Link returns interface dev of namespace ns ("" for the caller's). The
// error says "does not exist" when there is no such interface.
func Link(ns, dev string) (LinkInfo, error) {
	args := []string{"ip", "-j", "-d"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out, err := Output(append(args, "link", "show", "dev", dev)...)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return LinkInfo{}, fmt.Errorf("%s in %q does not exist", dev, ns)
		}
		return LinkInfo{}, err
	}
	var raw []ipLink
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return LinkInfo{}, fmt.Errorf("ip -j link show dev %s: %w", dev, err)
	}
	if len(raw) != 1 {
		return LinkInfo{}, fmt.Errorf("ip -j link show dev %s: %d entries", dev, len(raw))
	}
	return raw[0].info(), nil
}

// Namespaces lists the named network namespaces (ip netns list).
func Namespaces() ([]string, error) {
	out, err := Output("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}
