package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ulagg/ulagg/config"
)

// FuzzParse checks that Parse never panics, that what it accepts validates
// and survives a Marshal round trip, and that every error has a message.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.toml"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("lagg = [{ name = \"l\", port = [{ name = \"p\" }, 5] }]\n"))
	f.Add([]byte("[[lagg]]\nname = \"\\u0041\"\n\"a\\\"b\" = '''x\n'''\n"))
	f.Add([]byte("a = \"\"\"\nx\"\"\"\"\nb = [\n# c\n1,]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse("fuzz.toml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse: got config %+v with error %v, want nil", c, err)
			}
			if err.Error() == "" {
				t.Fatalf("Parse: got an empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate after successful Parse: %v", err)
		}
		out, err := config.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal after successful Parse: %v", err)
		}
		back, err := config.Parse("marshalled.toml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		// Parse turns an empty address list into nil, as Marshal omits it.
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("Parse(Marshal(c)):\ngot  %+v\nwant %+v", back, c)
		}
	})
}
