// Package schema holds the JSON Schemas of what ulagg prints as JSON:
// status (`ulagg ifconfig --json`), events (`ulagg monitor --json`), the
// capture summary and routes (`ulagg route show --json`). docs/json.md is generated from them
// (stack/appliance's TestJSONDoc); the conventions they follow are stated
// at the top of lagg/status_json.go.
package schema

import "embed"

// FS holds status.schema.json, events.schema.json, capture.schema.json
// and route.schema.json.
//
//go:embed *.schema.json
var FS embed.FS

// Files lists the schemas, in the order docs/json.md documents them.
var Files = []string{"status.schema.json", "events.schema.json", "capture.schema.json", "route.schema.json"}
