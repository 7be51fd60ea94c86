package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ulagg/ulagg/stack/appliance"
)

func init() {
	commands = append(commands,
		command{"monitor", "[--json] [-c N] [LAGG]", "stream events: links, failovers, LACP, ports, config", cmdMonitor})
}

// cmdMonitor prints the appliance's events as they happen, one line each
// (JSON with --json, schema in stack/appliance/schema/events.schema.json),
// until Ctrl-C, N events (-c), or the appliance stops.
func cmdMonitor(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("monitor", stderr)
	sock := fs.String("s", defaultSocket(), "control `SOCKET` path")
	asJSON := fs.Bool("json", false, "print events as JSON lines")
	count := fs.Int("c", 0, "stop after `N` events (0: until Ctrl-C)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return fmt.Errorf("%w: want at most one LAGG, got %d arguments", errUsage, len(pos))
	case *count < 0:
		return fmt.Errorf("%w: -c %d: want a count of 0 or more", errUsage, *count)
	}
	req := appliance.ControlRequest{Count: *count}
	if len(pos) == 1 {
		req.Lagg = pos[0]
	}
	m, err := appliance.StartMonitor(*sock, req)
	if err != nil {
		return err
	}
	defer m.Close()
	// Ctrl-C: half-close, so that the appliance ends the stream cleanly.
	defer onInterrupt(func() {
		if m.Stop() != nil {
			m.Close()
		}
	})()
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	for {
		ev, err := m.Next()
		if errors.Is(err, io.EOF) {
			end, _ := m.End()
			if *asJSON {
				_ = enc.Encode(end)
				return w.Flush()
			}
			fmt.Fprintf(w, "%s\n", appliance.FormatEvent(end))
			return w.Flush()
		}
		if err != nil {
			_ = w.Flush()
			return fmt.Errorf("monitor: %w", err)
		}
		if *asJSON {
			err = enc.Encode(ev)
		} else {
			_, err = fmt.Fprintln(w, appliance.FormatEvent(ev))
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return err
		}
	}
}
