package config

import (
	"go/parser"
	"go/token"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// schemaListing returns the key listing of doc.go's "# Schema" section:
// the first code block after the heading, as go doc shows it.
func schemaListing(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", src, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil || f.Doc == nil {
		t.Fatalf("doc.go: no package documentation (%v)", err)
	}
	_, after, ok := strings.Cut(f.Doc.Text(), "\n# Schema\n")
	if !ok {
		t.Fatal("doc.go: no # Schema section")
	}
	// The listing is the indented block; the next heading ends the section.
	after, _, _ = strings.Cut(after, "\n# ")
	var code []string
	in := false
	for _, l := range strings.Split(after, "\n") {
		switch {
		case strings.HasPrefix(l, "\t"):
			in = true
			code = append(code, strings.TrimPrefix(l, "\t"))
		case in && strings.TrimSpace(l) == "":
			code = append(code, "")
		case in:
			return strings.Join(code, "\n")
		}
	}
	if !in {
		t.Fatal("doc.go: the # Schema section has no key listing")
	}
	return strings.Join(code, "\n")
}

var (
	docTable = regexp.MustCompile(`^\[\[?([a-z0-9_.]+)\]\]?\s*(#.*)?$`)
	docKey   = regexp.MustCompile(`^([a-z0-9_-]+)\s*=`)
)

// docTables splits the listing into its tables: the keys each lists (a
// "key = value" line) and the whole text of the table, comments included.
func docTables(listing string) (keys map[string][]string, text map[string]string) {
	keys, text = map[string][]string{}, map[string]string{}
	table := ""
	for _, l := range strings.Split(listing, "\n") {
		if m := docTable.FindStringSubmatch(l); m != nil {
			table = m[1]
			if _, ok := keys[table]; !ok {
				keys[table] = nil // present, even with no key
			}
		} else if m := docKey.FindStringSubmatch(l); m != nil {
			keys[table] = append(keys[table], m[1])
		}
		text[table] += l + "\n"
	}
	return keys, text
}

// decoderTables are the decoder's known keys by table path. A table the
// listing documents must be here, so that its keys are checked.
var decoderTables = map[string][]string{
	"":                topKeys,
	"control":         controlKeys,
	"metrics":         metricsKeys,
	"limits":          limitsKeys,
	"lagg":            laggKeys,
	"lagg.failover":   failoverKeys,
	"lagg.roundrobin": rrKeys,
	"lagg.lacp":       lacpKeys,
	"lagg.monitor":    monitorKeys,
	"lagg.port":       portKeys,
	"service":         serviceKeys,
	"route":           routeKeys,
	"vlan":            vlanKeys,
}

// docAliases are other spellings of a key, named in the text of its
// table rather than on a line of their own.
var docAliases = map[string][]string{
	"lagg.lacp": {"multi-speed", "multi-linkspeed"},
	"route":     {"lagg"},
}

// Every key the decoder accepts is in doc.go's schema listing (which
// ulagg.toml(5) is made from), every table it lists is one the decoder
// reads, and the listing itself decodes without an unknown key, a value
// of the wrong type or out of range: "a key that is not listed here is an
// error" holds both ways.
func TestDocListsEveryKey(t *testing.T) {
	listing := schemaListing(t)
	keys, text := docTables(listing)
	for _, table := range slices.Sorted(maps.Keys(decoderTables)) {
		for _, k := range decoderTables[table] {
			sub := k
			if table != "" {
				sub = table + "." + k
			}
			_, isTable := keys[sub]
			switch {
			case isTable:
			case table == "" || !slices.Contains(keys[table], k) && !slices.Contains(docAliases[table], k):
				t.Errorf("the decoder accepts %s, but doc.go's # Schema listing does not list it", sub)
			case slices.Contains(docAliases[table], k) && !regexp.MustCompile(`\b`+regexp.QuoteMeta(k)+`\b`).MatchString(text[table]):
				t.Errorf("doc.go: [%s] does not mention %s, another spelling the decoder accepts", table, k)
			}
		}
	}
	for _, table := range slices.Sorted(maps.Keys(keys)) {
		if _, ok := decoderTables[table]; !ok {
			t.Errorf("doc.go lists [%s], which the decoder does not read (or add its keys to decoderTables in doc_test.go)", table)
		}
	}
	// The listing is TOML: decoded, it must give no decoder error.
	var raw map[string]any
	if _, err := toml.Decode(listing, &raw); err != nil {
		t.Fatalf("doc.go's schema listing is not TOML: %v", err)
	}
	d := &decoder{}
	d.config(raw)
	for _, e := range d.errs {
		t.Errorf("doc.go's schema listing, decoded: %s", e.Error())
	}
}

// The address words are documented where they are accepted.
func TestDocAddressWords(t *testing.T) {
	_, text := docTables(schemaListing(t))
	for table, words := range map[string][]string{"lagg": {AddrDHCP, AddrSLAAC}, "vlan": {AddrDHCP}} {
		for _, w := range words {
			if !strings.Contains(text[table], `"`+w+`"`) {
				t.Errorf("doc.go: [%s] addresses does not document the %q word", table, w)
			}
		}
	}
}

// The commented-out tables of examples/ulagg.toml ("# [[vlan]]" and the
// "# key = value" lines after it) stay a valid configuration when
// uncommented, so that an operator who does so gets no error.
func TestExampleCommentedTables(t *testing.T) {
	src, err := os.ReadFile("../examples/ulagg.toml")
	if err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`^# (\[\[?[a-z.]+\]\]?)\s*(#.*)?$`)
	key := regexp.MustCompile(`^# ([a-z0-9_-]+\s*=.*)$`)
	var out []string
	tables := 0
	in := false
	for _, l := range strings.Split(string(src), "\n") {
		switch m := header.FindStringSubmatch(l); {
		case m != nil:
			in = true
			tables++
			l = m[1]
		case in && key.MatchString(l):
			l = key.FindStringSubmatch(l)[1]
		case in && l == "#":
			l = ""
		default:
			in = false
		}
		out = append(out, l)
	}
	c, err := Parse("ulagg.toml, uncommented", []byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if tables == 0 || len(c.VLANs) == 0 || len(c.Routes) == 0 {
		t.Errorf("uncommented %d tables: %d VLANs, %d routes; want the commented [[vlan]] and [[route]] examples", tables, len(c.VLANs), len(c.Routes))
	}
}

// Every TOML example in README.md uses keys and values the decoder takes,
// and each one that declares its laggs is a valid configuration on its own
// (a lone [[route]] example names a lagg it does not declare).
func TestReadmeTOML(t *testing.T) {
	src, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(src), -1)
	if len(blocks) < 4 {
		t.Fatalf("README.md: %d TOML examples, want the configuration, monitor, route, VLAN and DHCP ones", len(blocks))
	}
	for i, b := range blocks {
		var raw map[string]any
		if _, err := toml.Decode(b[1], &raw); err != nil {
			t.Errorf("README.md TOML example %d is not TOML: %v\n%s", i, err, b[1])
			continue
		}
		d := &decoder{}
		d.config(raw)
		for _, e := range d.errs {
			t.Errorf("README.md TOML example %d: %s\n%s", i, e.Error(), b[1])
		}
		if _, ok := raw["lagg"]; ok && len(d.errs) == 0 {
			if _, err := Parse("README.md", []byte(b[1])); err != nil {
				t.Errorf("README.md TOML example %d: %v\n%s", i, err, b[1])
			}
		}
	}
}
