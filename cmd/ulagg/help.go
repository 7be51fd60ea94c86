package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Help comes from one source: the commands table (name, synopsis, one
// line) and each command's flag set. `ulagg -h`, `ulagg COMMAND -h`, the
// manual page (man.go) and the shell completion (completion.go) are all
// printed from them.
//
// Every help goes to standard output and exits 0; a usage error goes to
// standard error and exits 2.

// cliStderr is the standard error mainArgs hands a command. It carries
// standard output, so that a flag set's -h (newFlags only sees stderr)
// prints help there, and, when the manual or the completion asks a
// command for its flags, the flag set it built.
type cliStderr struct {
	io.Writer
	stdout io.Writer
	fs     *flag.FlagSet // the last flag set newFlags made, when probing
	probe  bool
}

// newFlagSet makes a command's flag set. Go's flag package would print
// its own error and usage to stderr; they are quiet here, and mainArgs
// prints the error once with a pointer to -h.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ulagg "+name, flag.ContinueOnError)
	// The flag package calls Usage for -h and after writing a parse error
	// to its output: help is printed only when no error came first.
	var out errSeen
	fs.SetOutput(&out)
	fs.Usage = func() {}
	if ce, ok := stderr.(*cliStderr); ok {
		ce.fs = fs
		fs.Usage = func() {
			if !out.seen && !ce.probe {
				writeCommandHelp(ce.stdout, name, fs)
			}
			out.seen = false
		}
	}
	return fs
}

// errSeen swallows what the flag package writes, noting that it did.
type errSeen struct{ seen bool }

func (e *errSeen) Write(p []byte) (int, error) {
	e.seen = true
	return len(p), nil
}

// allCommands returns the commands table. It is set in init: the table's
// own entries lead here (cmdRun → newFlags → help), and a direct reference
// would be an initialization cycle.
var allCommands func() []command

func init() { allCommands = func() []command { return commands } }

// lookupCommand returns the command called name.
func lookupCommand(name string) (command, bool) {
	for _, c := range allCommands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// flagName is how a flag is written: -c for one letter, --dry-run for more
// (Go's flag package takes both spellings; the help prints one).
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// flagHelp is one flag as the help, the manual and the completion see it.
type flagHelp struct {
	name  string // as written: -c, --dry-run
	arg   string // the value's name (FILE, N); "" for a boolean
	usage string // what it does, without the value's backquotes
	def   string // the default, "" if none worth printing
}

// commandFlags lists fs's flags in name order.
func commandFlags(fs *flag.FlagSet) []flagHelp {
	var out []flagHelp
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		switch {
		case isBoolFlag(f):
			arg = ""
		case arg == "int" || arg == "uint":
			arg = "N"
		case strings.ToLower(arg) == arg: // a type name: string, duration, value
			arg = strings.ToUpper(arg)
		}
		def := f.DefValue
		if isBoolFlag(f) && def == "false" || def == "" || def == "0" {
			def = ""
		}
		out = append(out, flagHelp{name: flagName(f.Name), arg: arg, usage: usage, def: def})
	})
	return out
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// writeCommandHelp prints `ulagg NAME -h`.
func writeCommandHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c, _ := lookupCommand(name)
	fmt.Fprintf(w, "usage: ulagg %s %s\n\n%s.\n", c.name, c.args, upperFirst(c.help))
	flags := commandFlags(fs)
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(w, "\nOptions:\n")
	for _, f := range flags {
		left := f.name
		if f.arg != "" {
			left += " " + f.arg
		}
		usage := f.usage
		if f.def != "" {
			usage += fmt.Sprintf(" (default %s)", f.def)
		}
		if len(left) > 20 {
			fmt.Fprintf(w, "  %s\n  %-20s %s\n", left, "", usage)
			continue
		}
		fmt.Fprintf(w, "  %-20s %s\n", left, usage)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// usage prints the list of commands (`ulagg -h`).
func usage(w io.Writer) {
	fmt.Fprintf(w, "ulagg: lagg(4) link aggregation as a userspace TCP/IP appliance\n\nUsage:\n")
	for _, c := range commands {
		if len(c.args) > 28 {
			fmt.Fprintf(w, "  ulagg %-10s %s\n  %-16s %-28s %s\n", c.name, c.args, "", "", c.help)
			continue
		}
		fmt.Fprintf(w, "  ulagg %-10s %-28s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintf(w, "  ulagg --version\n\nRun 'ulagg COMMAND -h' (or 'ulagg help COMMAND') for a command's options;\n'man ulagg' and 'man ulagg.toml' for the manuals.\n")
}

// probeCommand runs c with -h to learn its help without printing it: the
// flag set it builds (nil for a command that parses its own words, as
// ifconfig does) and the text it prints on -h.
func probeCommand(c command) (*flag.FlagSet, string) {
	var out bytes.Buffer
	ce := &cliStderr{Writer: io.Discard, stdout: &out, probe: true}
	_ = c.run([]string{"-h"}, &out, ce)
	return ce.fs, out.String()
}

// cmdHelp is `ulagg help [COMMAND]`.
func cmdHelp(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("help", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		usage(stdout)
		return nil
	}
	c, ok := lookupCommand(args[0])
	if !ok {
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	// The command prints its own help, on stdout.
	err := c.run([]string{"-h"}, stdout, &cliStderr{Writer: stderr, stdout: stdout})
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}
