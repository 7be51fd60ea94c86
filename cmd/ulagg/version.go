package main

import (
	"fmt"
	"io"

	"github.com/ulagg/ulagg/internal/buildinfo"
)

// version is the module version the binary was built as, for the log.
var version = buildinfo.Read().Version

func init() {
	commands = append(commands, command{"help", "[COMMAND]", "print the commands, or a command's options", cmdHelp})
}

// cmdVersion prints the module version, the VCS revision and the Go
// version (`ulagg version`, `ulagg --version`). A build without VCS
// information (GOFLAGS=-buildvcs=false, go run, a tarball) says so instead
// of inventing a revision.
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	fmt.Fprintln(stdout, buildinfo.Read())
	return nil
}
