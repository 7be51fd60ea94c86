package config

// DisabledPorts names the lagg's ports that are configured out of service
// (disabled = true; ifconfig laggport IF -active), in configuration order.
func (l *Lagg) DisabledPorts() []string {
	var out []string
	for _, p := range l.Ports {
		if p.Disabled {
			out = append(out, p.Name)
		}
	}
	return out
}

// controlGroup checks [control] group: a group name as useradd(8) takes
// one, or a gid.
func (v *checker) controlGroup(g string) {
	if g == "" {
		return
	}
	if len(g) > 32 {
		v.errorf("control.group", "%q is longer than 32 bytes", g)
		return
	}
	for i, r := range g {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && (r == '-' || r == '.' || r == '$' && i == len(g)-1)
		if !ok {
			v.errorf("control.group", "%q is not a group name (lowercase letters, digits, _ . -) or a gid", g)
			return
		}
	}
}
