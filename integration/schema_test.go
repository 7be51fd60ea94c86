package integration

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ulagg/ulagg/stack/appliance/schema"
)

// checkSchema validates data, what the ulagg binary printed as what,
// against schema file f (stack/appliance/schema), every file loaded.
func checkSchema(t *testing.T, f, what string, data []byte) {
	t.Helper()
	const base = "https://github.com/ulagg/ulagg/stack/appliance/schema/"
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range schema.Files {
		raw, err := schema.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.AddResource(base+name, doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	s, err := c.Compile(base + f)
	if err != nil {
		t.Fatalf("compile %s: %v", f, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, data)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s does not match %s: %v\n%s", what, f, err, data)
	}
}
