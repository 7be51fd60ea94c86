package appliance_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/stack/appliance"
	"github.com/ulagg/ulagg/stack/appliance/schema"
)

var updateJSON = flag.Bool("update", false, "rewrite testdata/*.golden.json and docs/json.md")

const schemaBase = "https://github.com/ulagg/ulagg/stack/appliance/schema/"

// compileSchema compiles ref (a schema file, or file#/$defs/name) with
// every schema file loaded, formats (date-time) asserted.
func compileSchema(t *testing.T, ref string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, f := range schema.Files {
		data, err := schema.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := c.AddResource(schemaBase+f, doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	s, err := c.Compile(schemaBase + ref)
	if err != nil {
		t.Fatalf("compile %s: %v", ref, err)
	}
	return s
}

// validateJSON checks data against s.
func validateJSON(t *testing.T, s *jsonschema.Schema, what string, data []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, data)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s does not match its schema: %v\n%s", what, err, data)
	}
}

// volatile are the keys whose values change from run to run (addresses
// the rig makes up, counters, times); normalize replaces their values.
var volatile = map[string]bool{
	"mac": true, "system": true, "time": true, "last_change": true, "counters": true, "drops": true,
	"kernel_drops": true, "last_failover_ms": true, "generation": true, "failovers": true, "link_local": true,
	"id": true, "aggregator": true, "active_aggregator": true, "key": true,
	// DHCP's seconds left tick while the status is taken.
	"renew_in_s": true, "rebind_in_s": true, "expires_in_s": true,
}

// normalize replaces volatile values by placeholders of the same type,
// keeping every key; which drop reasons are counted, and whether the
// appliance-wide drops are shown at all, are volatile too.
func normalize(v any, vol bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			switch k {
			case "drops":
				out[k] = map[string]any{}
			case "stack_drops", "capture_drops":
			case "vlan": // a VLAN's tag: its id is no aggregator's
				out[k] = e
			default:
				out[k] = normalize(e, vol || volatile[k])
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e, vol)
		}
		return out
	case float64:
		if vol {
			return 0
		}
	case string:
		if vol && x != "" {
			return "<volatile>"
		}
	}
	return v
}

// checkGolden compares data, normalized, with testdata/name.golden.json
// (rewritten with -update).
func checkGolden(t *testing.T, name string, data []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(normalize(v, false)); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", name+".golden.json")
	if *updateJSON {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -run %s -update rewrites it):\ngot:\n%s", name, path, t.Name(), got)
	}
}

// jsonStatus returns `ulagg ifconfig --json [-v] LAGG` through the socket.
func (r *ctlRig) jsonStatus(name string, verbose bool) []byte {
	r.t.Helper()
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: name, JSON: true, Verbose: verbose})
	if err != nil {
		r.t.Fatalf("status --json %s: %v", name, err)
	}
	return []byte(resp.Output)
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, data []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// appKeys are the keys the appliance adds to a lagg's own JSON: those of
// LaggJSON's own fields that lagg.StatusJSON has not.
var appKeys = func() []string {
	tags := func(t reflect.Type) []string {
		var keys []string
		for f := range t.Fields() {
			if !f.Anonymous {
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				keys = append(keys, name)
			}
		}
		return keys
	}
	lg := tags(reflect.TypeFor[lagg.StatusJSON]())
	return slices.DeleteFunc(tags(reflect.TypeFor[appliance.LaggJSON]()), func(k string) bool { return slices.Contains(lg, k) })
}()

// checkStatusShapes validates `ifconfig --json` with and without -v, and
// json.Marshal of the Go status types, against the schema, compares them
// with the golden files name and name_v, and checks that the lagg's Go
// JSON has the keys the appliance's -v JSON has, less the appliance's own.
func checkStatusShapes(t *testing.T, r *ctlRig, name string) {
	t.Helper()
	all := compileSchema(t, "status.schema.json")
	one := compileSchema(t, "status.schema.json#/$defs/lagg")
	plain, verbose := r.jsonStatus("lagg0", false), r.jsonStatus("lagg0", true)
	validateJSON(t, all, "ifconfig --json", plain)
	validateJSON(t, all, "ifconfig --json -v", verbose)
	checkGolden(t, name, plain)
	checkGolden(t, name+"_v", verbose)

	goJSON, err := json.Marshal(r.a.Lagg("lagg0").Status())
	if err != nil {
		t.Fatal(err)
	}
	validateJSON(t, one, "json.Marshal(lagg.Status())", goJSON)
	sts := r.a.Status()
	appJSON, err := json.Marshal(sts[0])
	if err != nil {
		t.Fatal(err)
	}
	validateJSON(t, one, "json.Marshal(appliance.LaggStatus)", appJSON)
	var vs []json.RawMessage
	if err := json.Unmarshal(verbose, &vs); err != nil || len(vs) != 1 {
		t.Fatalf("ifconfig --json -v: %v", err)
	}
	want := slices.DeleteFunc(keysOf(t, vs[0]), func(k string) bool { return slices.Contains(appKeys, k) })
	if got := keysOf(t, goJSON); !slices.Equal(got, want) {
		t.Errorf("json.Marshal(lagg.Status()) keys:\ngot  %v\nwant %v (ifconfig --json -v's, less the appliance's)", got, want)
	}
}

// TestJSONStatusFailover: a failover lagg's JSON status.
func TestJSONStatusFailover(t *testing.T) {
	r := failoverRig(t)
	checkStatusShapes(t, r, "status_failover")
}

// TestJSONStatusLACP: a lacp lagg's JSON status, with the LACP blocks.
func TestJSONStatusLACP(t *testing.T) {
	r := newCtlRig(t, "", "lacp", "wm0", "wm1")
	r.mustIfconfig("lagg0 create", "lagg0 laggproto lacp laggport wm0 laggport wm1 192.168.1.1 netmask 255.255.255.0")
	testkit.WaitFor(t, 30*time.Second, "both ports distributing, on both sides", func() bool {
		st := r.a.Lagg("lagg0").Status()
		if !st.Up || len(st.Ports) != 2 {
			return false
		}
		for _, p := range st.Ports {
			if p.Flags != 0x1c || p.LACP == nil || p.LACP.Partner.State&0x20 == 0 || p.LACP.Mux != "DISTRIBUTING" {
				return false
			}
		}
		return true
	})
	checkStatusShapes(t, r, "status_lacp")
	v := string(r.jsonStatus("lagg0", true))
	for _, want := range []string{`"partner_mismatch": false`, `"state": {`, `"lacp_options": {`, `"names": [`} {
		if !strings.Contains(v, want) {
			t.Errorf("ifconfig --json -v lacks %s:\n%s", want, v)
		}
	}
}

// TestJSONStatusMissing: a lagg with a port whose interface is missing.
func TestJSONStatusMissing(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{absent: []string{"wm1"}}, "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	checkStatusShapes(t, r.ctlRig, "status_missing")
	var js []appliance.LaggJSON
	if err := json.Unmarshal(r.jsonStatus("lagg0", false), &js); err != nil || len(js) != 1 || len(js[0].Ports) != 2 {
		t.Fatalf("status: %+v (%v)", js, err)
	}
	if p := js[0].Ports[1]; p.Name != "wm1" || !p.Missing || p.Link != "missing" || p.Reason == "" {
		t.Errorf("missing port: got %+v", p)
	}
}

// TestJSONDoc: docs/json.md is what the schemas say (go test -run
// TestJSONDoc -update rewrites it).
func TestJSONDoc(t *testing.T) {
	got := jsonDoc(t)
	path := filepath.Join("..", "..", "docs", "json.md")
	if *updateJSON {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s does not match the schemas in schema/: go test ./stack/appliance -run TestJSONDoc -update", path)
	}
}

// schemaNode is the part of a JSON Schema the doc shows.
type schemaNode struct {
	Title       string                 `json:"title"`
	Description string                 `json:"description"`
	Type        any                    `json:"type"`
	Ref         string                 `json:"$ref"`
	Enum        []any                  `json:"enum"`
	Const       any                    `json:"const"`
	Format      string                 `json:"format"`
	Items       *schemaNode            `json:"items"`
	OneOf       []*schemaNode          `json:"oneOf"`
	Required    []string               `json:"required"`
	Properties  map[string]*schemaNode `json:"properties"`
	Defs        map[string]*schemaNode `json:"$defs"`
	AddProps    any                    `json:"additionalProperties"`
}

func (n *schemaNode) typeName() string {
	switch {
	case n.Ref != "":
		def := n.Ref[strings.LastIndex(n.Ref, "/")+1:]
		return fmt.Sprintf("[%s](#%s)", def, def)
	case n.Enum != nil:
		var vs []string
		for _, e := range n.Enum {
			vs = append(vs, fmt.Sprintf("`%v`", e))
		}
		return strings.Join(vs, ", ")
	case n.Const != nil:
		return fmt.Sprintf("`%v`", n.Const)
	case n.Type == "array" && n.Items != nil:
		return "array of " + n.Items.typeName()
	case n.OneOf != nil:
		var ts []string
		for _, o := range n.OneOf {
			ts = append(ts, o.typeName())
		}
		return "one of " + strings.Join(ts, ", ")
	case n.Type == "object":
		if m, ok := n.AddProps.(map[string]any); ok {
			return fmt.Sprintf("object of %v", m["type"])
		}
		return "object"
	case n.Format != "":
		return fmt.Sprintf("%v (%s)", n.Type, n.Format)
	}
	return fmt.Sprint(n.Type)
}

// jsonDoc renders docs/json.md from the schemas.
func jsonDoc(t *testing.T) []byte {
	var b strings.Builder
	b.WriteString(`<!-- Generated from stack/appliance/schema/*.schema.json by
     go test ./stack/appliance -run TestJSONDoc -update; do not edit. -->
# ulagg's JSON

` + "`ulagg ifconfig --json`" + `, the http-status service, ` + "`ulagg monitor --json`" + `, the
capture summary and ` + "`ulagg route show --json`" + ` print JSON by one set of
rules, stated as JSON Schema in stack/appliance/schema/ (draft 2020-12) and
here:

- Keys are snake_case. The Go types carry them as json tags: json.Marshal
  of a lagg.Status, appliance.LaggStatus or lagg.Event prints what the CLI
  prints.
- MAC addresses are strings ` + "`aa:bb:cc:dd:ee:ff`" + ` (empty when none); IP
  addresses and prefixes are strings (` + "`192.168.1.1/24`" + `).
- Bit sets (port flags, interface flags, LACP states) are an object
  ` + "`{\"value\": 28, \"names\": [\"ACTIVE\", \"COLLECTING\", \"DISTRIBUTING\"]}`" + `.
- Durations are milliseconds in keys ending in ` + "`_ms`" + `; times are RFC 3339 with
  nanoseconds.
- Counters are unsigned integers; maps and lists are ` + "`{}`" + ` and ` + "`[]`" + `, never
  null; a block that does not apply is left out.
- Keys marked (-v) appear only with ` + "`-v`" + `, as in the text form.

Adding a field: tag it by these rules, describe it in the schema, run
` + "`go test ./stack/appliance -run 'TestJSON' -update`" + ` (golden files and this
page) and ` + "`go test ./lagg -run TestStatusJSONFields`" + `.
`)
	for _, f := range schema.Files {
		data, err := schema.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var root schemaNode
		if err := json.Unmarshal(data, &root); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fmt.Fprintf(&b, "\n## %s (%s)\n\n%s\n", root.Title, f, root.Description)
		if root.Type != nil || root.Ref != "" {
			fmt.Fprintf(&b, "\nThe document: %s.\n", root.typeName())
		}
		defs := make([]string, 0, len(root.Defs))
		for k := range root.Defs {
			defs = append(defs, k)
		}
		sort.Strings(defs)
		for _, name := range defs {
			d := root.Defs[name]
			fmt.Fprintf(&b, "\n### %s\n\n%s", name, d.Description)
			if len(d.Properties) == 0 {
				fmt.Fprintf(&b, " Type: %s.\n", d.typeName())
				continue
			}
			b.WriteString("\n\n| key | type | required | description |\n|---|---|---|---|\n")
			keys := make([]string, 0, len(d.Properties))
			for k := range d.Properties {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := d.Properties[k]
				req := ""
				if slices.Contains(d.Required, k) {
					req = "yes"
				}
				if p.Description == "" {
					t.Errorf("%s: %s.%s has no description", f, name, k)
				}
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k, p.typeName(), req, strings.ReplaceAll(p.Description, "|", "\\|"))
			}
		}
	}
	return []byte(b.String())
}
