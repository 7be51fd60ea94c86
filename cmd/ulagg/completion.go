package main

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

func init() {
	commands = append(commands, command{"completion", "bash|zsh", "print the shell completion script", cmdCompletion})
}

// cmdCompletion prints a completion script made from the commands table
// (help.go): subcommands, their flags and flag values, lagg names (from
// `ulagg ifconfig -l`, when the appliance answers), interface names (from
// /sys/class/net) and ifconfig's keywords (from its usage).
//
//	source <(ulagg completion bash)   # or: ulagg completion bash > /etc/bash_completion.d/ulagg
//	source <(ulagg completion zsh)    # in ~/.zshrc
func cmdCompletion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("completion", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want bash or zsh", errUsage)
	}
	switch fs.Arg(0) {
	case "bash":
		fmt.Fprint(stdout, bashCompletion())
	case "zsh":
		// zsh runs the bash function through its bashcompinit layer.
		fmt.Fprint(stdout, "# zsh completion for ulagg: source <(ulagg completion zsh)\n"+
			"(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }\n"+
			"autoload -U +X bashcompinit && bashcompinit\n"+bashCompletion())
	default:
		return fmt.Errorf("%w: %q: want bash or zsh", errUsage, fs.Arg(0))
	}
	return nil
}

// complFlag is a flag as completion needs it.
type complFlag struct {
	name string // -c, --dry-run
	arg  string // the value's name, "" for a boolean
}

// usageFlag matches a flag in a usage line: "[-s SOCKET]", "[--json]".
var usageFlag = regexp.MustCompile(`\[(-{1,2}[a-z][a-z0-9-]*)(?: ([A-Z][A-Z0-9]*))?\]`)

// completionFlags returns c's flags: from its flag set, or, for a command
// that parses its own words, from the usage lines its -h prints.
func completionFlags(c command) []complFlag {
	fs, text := probeCommand(c)
	var out []complFlag
	if fs != nil {
		for _, f := range commandFlags(fs) {
			out = append(out, complFlag{f.name, f.arg})
		}
		return out
	}
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, "ulagg "+c.name) {
			continue
		}
		for _, m := range usageFlag.FindAllStringSubmatch(line, -1) {
			if !containsFlag(out, m[1]) {
				out = append(out, complFlag{m[1], m[2]})
			}
		}
	}
	return out
}

func containsFlag(fs []complFlag, name string) bool {
	for _, f := range fs {
		if f.name == name {
			return true
		}
	}
	return false
}

// positionals lists c's positional arguments from its synopsis, with the
// flags and their values taken out: "[-c N] -w FILE LAGG [PORT]" is LAGG
// PORT. Alternatives stay one word (bash|zsh).
func positionals(c command, flags []complFlag) []string {
	words := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(c.args))
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "|" {
			continue
		}
		if strings.HasPrefix(w, "-") {
			for _, f := range flags {
				if f.name == w && f.arg != "" {
					i++ // the flag's value
				}
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

// valueWords is what completes a value or positional argument named arg:
// a shell function (laggs, interfaces, files), a word list, or nothing.
func valueWords(arg string) string {
	arg = strings.TrimSuffix(arg, "...")
	switch arg {
	case "LAGG":
		return "$(_ulagg_laggs)"
	case "PORT", "IF", "IFACE", "INTERFACE":
		return "$(_ulagg_ifaces)"
	case "COMMAND":
		return strings.Join(commandNames(), " ")
	case "LEVEL":
		return "debug info warn error"
	case "FORMAT":
		return "text json"
	}
	if strings.Contains(arg, "|") && strings.ToLower(arg) == arg {
		return strings.ReplaceAll(arg, "|", " ")
	}
	return ""
}

// isFileArg says whether a flag's value is a path.
func isFileArg(arg string) bool { return arg == "FILE" || arg == "SOCKET" }

func commandNames() []string {
	var out []string
	for _, c := range allCommands() {
		out = append(out, c.name)
	}
	return out
}

// ifconfigWords reads ifconfig's keywords and protocols from its usage
// (ctl.go's ifconfigUsage, printed by `ulagg ifconfig -h`): the option
// lines are the indented ones after "Options".
func ifconfigWords() (keywords, protos []string) {
	c, ok := lookupCommand("ifconfig")
	if !ok {
		return nil, nil
	}
	_, text := probeCommand(c)
	var block []string
	inOptions := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "Options"):
			inOptions = true
		case inOptions && strings.HasPrefix(line, " "):
			block = append(block, line)
		case inOptions:
			inOptions = false
		}
	}
	// Remarks in parentheses, which may span lines, are prose.
	opts := regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(strings.Join(block, "\n"), " ")
	seen := map[string]bool{}
	for _, line := range strings.Split(opts, "\n") {
		fields := strings.Fields(line)
		if len(fields) > 1 && fields[0] == "laggproto" {
			protos = strings.Split(fields[1], "|")
		}
		for _, w := range strings.Fields(strings.NewReplacer("|", " ", "[", " ", "]", " ").Replace(line)) {
			if ifconfigWord.MatchString(w) && !seen[w] {
				seen[w] = true
				keywords = append(keywords, w)
			}
		}
	}
	sort.Strings(keywords)
	return keywords, protos
}

var ifconfigWord = regexp.MustCompile(`^-?[a-z][a-z0-9_-]*[a-z0-9]$`)

// bashCompletion renders the bash script.
func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for ulagg, generated by "ulagg completion bash".
_ulagg_ifaces() {
	local d
	for d in /sys/class/net/*; do [ -e "$d" ] && printf '%s\n' "${d##*/}"; done
}
_ulagg_laggs() {
	# The running appliance's laggs, if its control socket answers.
	"${COMP_WORDS[0]}" ifconfig -l 2>/dev/null | tr ' ' '\n'
}
_ulagg() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd=${COMP_WORDS[1]} words="" i n=0 w
	COMPREPLY=()
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "` + strings.Join(commandNames(), " ") + ` --version --help" -- "$cur"))
		return
	fi
`)
	var infos []cmdInfo
	for _, c := range allCommands() {
		infos = append(infos, cmdInfo{c, completionFlags(c)})
	}
	// A flag's value.
	b.WriteString("\tcase \"$cmd $prev\" in\n")
	for _, in := range infos {
		for _, f := range in.flags {
			if f.arg == "" {
				continue
			}
			fmt.Fprintf(&b, "\t\"%s %s\")\n", in.c.name, f.name)
			switch {
			case isFileArg(f.arg):
				b.WriteString("\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n")
			case valueWords(f.arg) != "":
				fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n", valueWords(f.arg))
			}
			b.WriteString("\t\treturn ;;\n")
		}
	}
	b.WriteString("\tesac\n")
	// ifconfig: flags, then LAGG, then keywords (some start with '-').
	keywords, protos := ifconfigWords()
	fmt.Fprintf(&b, `	if [ "$cmd" = ifconfig ]; then
		local lagg=""
		for ((i = 2; i < COMP_CWORD; i++)); do
			w=${COMP_WORDS[i]}
			case "$w" in
			-s) ((i++)) ;;
			-*) ;;
			*) lagg=$w; break ;;
			esac
		done
		if [ -z "$lagg" ]; then
			if [[ $cur == -* ]]; then
				COMPREPLY=($(compgen -W "%s" -- "$cur"))
			else
				COMPREPLY=($(compgen -W "$(_ulagg_laggs)" -- "$cur"))
			fi
			return
		fi
		case "$prev" in
		laggport | -laggport | laggportpri) COMPREPLY=($(compgen -W "$(_ulagg_ifaces)" -- "$cur")) ;;
		laggproto) COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;
		*) COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;
		esac
		return
	fi
`, flagNames(infoFlags(infos, "ifconfig")), strings.Join(protos, " "), strings.Join(keywords, " "))
	// Flags.
	b.WriteString("\tif [[ $cur == -* ]]; then\n\t\tcase \"$cmd\" in\n")
	for _, in := range infos {
		if len(in.flags) > 0 {
			fmt.Fprintf(&b, "\t\t%s) words=\"%s\" ;;\n", in.c.name, flagNames(in.flags))
		}
	}
	b.WriteString("\t\tesac\n\t\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n\t\treturn\n\tfi\n")
	// Positional arguments: count the words before cur that are neither
	// flags nor flag values.
	b.WriteString("\tfor ((i = 2; i < COMP_CWORD; i++)); do\n\t\tw=${COMP_WORDS[i]}\n\t\tcase \"$cmd $w\" in\n")
	for _, in := range infos {
		for _, f := range in.flags {
			if f.arg != "" {
				fmt.Fprintf(&b, "\t\t\"%s %s\") ((i++)); continue ;;\n", in.c.name, f.name)
			}
		}
	}
	b.WriteString("\t\tesac\n\t\t[[ $w == -* ]] || ((n++))\n\tdone\n\tcase \"$cmd $n\" in\n")
	for _, in := range infos {
		pos := positionals(in.c, in.flags)
		for i, p := range pos {
			v := valueWords(p)
			pat := fmt.Sprintf("%s %d", in.c.name, i)
			if strings.HasSuffix(p, "...") && i == len(pos)-1 {
				pat = fmt.Sprintf("%s *", in.c.name)
			}
			switch {
			case p == "FILE":
				fmt.Fprintf(&b, "\t\"%s\") COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n", pat)
			case v != "":
				fmt.Fprintf(&b, "\t\"%s\") COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")) ;;\n", pat, v)
			}
		}
	}
	b.WriteString("\tesac\n}\ncomplete -F _ulagg ulagg\n")
	return b.String()
}

// cmdInfo is a command with its flags, for the completion script.
type cmdInfo struct {
	c     command
	flags []complFlag
}

func infoFlags(infos []cmdInfo, name string) []complFlag {
	for _, in := range infos {
		if in.c.name == name {
			return in.flags
		}
	}
	return nil
}

func flagNames(fs []complFlag) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.name)
	}
	return strings.Join(out, " ")
}
