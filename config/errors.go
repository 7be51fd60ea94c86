package config

import (
	"strconv"
	"strings"
)

// Error is one configuration problem. Parse and Validate return every problem
// found, each an *Error, joined with errors.Join; use errors.As or the
// Unwrap() []error method of the joined error to get at them.
type Error struct {
	File string // file name given to Parse; "" from Validate
	Line int    // 1-based line; 0 if unknown
	Key  string // key path such as "lagg[0].port[1].priority"; "" for syntax errors
	Msg  string // one line, no trailing period
	Err  error  // underlying error (a toml.ParseError for syntax errors), or nil
}

// Error formats as "file:line: key: msg", leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		if e.File == "" {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// keyPath appends key to the table path p, quoting keys that are not bare
// TOML keys so that the path reads back unambiguously.
func keyPath(p, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if p == "" {
		return key
	}
	return p + "." + key
}

// indexPath appends an array index to p.
func indexPath(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isBareByte(k[i]) {
			return false
		}
	}
	return true
}

func isBareByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
