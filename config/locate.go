package config

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The TOML library keeps key positions private and does not tell elements
// of an array of tables apart, so error lines come from this small scanner.
// It runs only on input the library has already accepted, so it does not
// validate anything; it must merely never panic or loop on odd input.

// lineIndex maps key paths ("lagg[0].port[1].priority") to 1-based lines.
type lineIndex struct {
	at map[string]int // key path → byte offset of its first appearance
	nl []int          // offsets of '\n'
}

// line returns the line of key, or of the closest enclosing table or array
// that appears in the file, or 0.
func (x *lineIndex) line(key string) int {
	for key != "" {
		if off, ok := x.at[key]; ok {
			return sort.SearchInts(x.nl, off) + 1
		}
		key = parentPath(key)
	}
	return 0
}

// parentPath strips the last ".key" or "[i]" from p, honouring quoted keys.
func parentPath(p string) string {
	cut, inQuote := 0, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '.' || c == '['):
			cut = i
		}
	}
	return p[:cut]
}

func locate(data []byte) *lineIndex {
	s := &scanner{src: string(data), x: &lineIndex{at: map[string]int{}}, aot: map[string]int{}}
	for i := 0; i < len(s.src); i++ {
		if s.src[i] == '\n' {
			s.x.nl = append(s.x.nl, i)
		}
	}
	s.document()
	return s.x
}

type scanner struct {
	src string
	pos int
	x   *lineIndex
	aot map[string]int // array-of-tables path → elements seen so far
}

func (s *scanner) mark(path string, off int) {
	if _, ok := s.x.at[path]; !ok {
		s.x.at[path] = off
	}
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

// skipSpace skips blanks and, if lines is set, newlines and comments.
func (s *scanner) skipSpace(lines bool) {
	for !s.eof() {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n', '#':
			if !lines {
				return
			}
			if s.src[s.pos] == '#' {
				s.skipLine()
			} else {
				s.pos++
			}
		default:
			return
		}
	}
}

// skipLine moves to the start of the next line.
func (s *scanner) skipLine() {
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i + 1
	} else {
		s.pos = len(s.src)
	}
}

func (s *scanner) document() {
	if strings.HasPrefix(s.src, "\xef\xbb\xbf") {
		s.pos = 3
	}
	table := ""
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			table = s.header()
		} else if keys := s.key(); len(keys) > 0 {
			s.keyValue(table, keys, start)
		}
		s.skipLine()
	}
}

// header reads "[a.b]" or "[[a.b]]" and returns the resolved table path.
func (s *scanner) header() string {
	start := s.pos
	s.pos++
	array := s.peek() == '['
	if array {
		s.pos++
	}
	keys := s.key()
	path := ""
	for i, k := range keys {
		path = keyPath(path, k)
		n, isArray := s.aot[path]
		switch {
		case i == len(keys)-1 && array:
			s.mark(path, start)
			s.aot[path] = n + 1
			path = indexPath(path, n)
		case isArray && n > 0:
			// [[a]] then [a.b]: b belongs to the last element of a.
			path = indexPath(path, n-1)
		}
	}
	s.mark(path, start)
	return path
}

// key reads a dotted key and leaves pos after it and any blanks.
func (s *scanner) key() []string {
	var keys []string
	for {
		s.skipSpace(false)
		k, ok := s.simpleKey()
		if !ok {
			return keys
		}
		keys = append(keys, k)
		s.skipSpace(false)
		if s.peek() != '.' {
			return keys
		}
		s.pos++
	}
}

func (s *scanner) simpleKey() (string, bool) {
	switch s.peek() {
	case '"':
		return s.basicString(), true
	case '\'':
		start := s.pos + 1
		s.skipTo(start, "'")
		return s.src[start:max(start, s.pos-1)], true
	}
	start := s.pos
	for !s.eof() && isBareByte(s.src[s.pos]) {
		s.pos++
	}
	return s.src[start:s.pos], s.pos > start
}

// keyValue records a "k.l = value" line under table.
func (s *scanner) keyValue(table string, keys []string, start int) {
	path := table
	for _, k := range keys {
		path = keyPath(path, k)
		s.mark(path, start)
	}
	if s.peek() != '=' {
		return
	}
	s.pos++
	s.skipSpace(false)
	s.value(path)
}

// value skips one value, recording the keys and elements inside it.
func (s *scanner) value(path string) {
	switch {
	case strings.HasPrefix(s.src[s.pos:], `"""`):
		s.skipTo(s.pos+3, `"""`)
		s.skipExtraQuotes('"')
	case strings.HasPrefix(s.src[s.pos:], `'''`):
		s.skipTo(s.pos+3, `'''`)
		s.skipExtraQuotes('\'')
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.skipTo(s.pos+1, "'")
	case s.peek() == '[':
		s.array(path)
	case s.peek() == '{':
		s.inlineTable(path)
	default:
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}

func (s *scanner) array(path string) {
	s.pos++ // '['
	for i := 0; ; i++ {
		s.skipSpace(true)
		if s.eof() || s.peek() == ']' {
			s.pos = min(s.pos+1, len(s.src))
			return
		}
		at := s.pos
		ep := indexPath(path, i)
		s.mark(ep, at)
		s.value(ep)
		s.skipSpace(true)
		if s.peek() == ',' {
			s.pos++
		}
		if s.pos == at { // not a value: give up rather than spin
			s.pos = len(s.src)
			return
		}
	}
}

func (s *scanner) inlineTable(path string) {
	s.pos++ // '{'
	for {
		s.skipSpace(true)
		if s.eof() || s.peek() == '}' {
			s.pos = min(s.pos+1, len(s.src))
			return
		}
		at := s.pos
		if keys := s.key(); len(keys) > 0 {
			s.keyValue(path, keys, at)
		}
		s.skipSpace(true)
		if s.peek() == ',' {
			s.pos++
		}
		if s.pos == at {
			s.pos = len(s.src)
			return
		}
	}
}

// skipTo moves pos just past the first close at or after from that is not
// escaped by a backslash (literal strings have no escapes but cannot
// contain one before the quote either, so the rule is harmless there).
func (s *scanner) skipTo(from int, close string) {
	for i := from; i < len(s.src); i++ {
		if s.src[i] == '\\' && close[0] == '"' {
			i++
			continue
		}
		if strings.HasPrefix(s.src[i:], close) {
			s.pos = i + len(close)
			return
		}
	}
	s.pos = len(s.src)
}

// skipExtraQuotes consumes the up to two quotes a multi-line string may end
// with before its closing delimiter ("""a"""" is `a"`).
func (s *scanner) skipExtraQuotes(q byte) {
	for range 2 {
		if s.peek() == q {
			s.pos++
		}
	}
}

// basicString reads a "..." string at pos and returns its decoded value.
func (s *scanner) basicString() string {
	var b strings.Builder
	for i := s.pos + 1; i < len(s.src); i++ {
		c := s.src[i]
		switch c {
		case '"', '\n':
			s.pos = i + 1
			return b.String()
		case '\\':
			i += unescape(&b, s.src[i+1:])
			continue
		}
		b.WriteByte(c)
	}
	s.pos = len(s.src)
	return b.String()
}

// unescape decodes the escape whose body (after the backslash) starts r,
// writes it to b and returns how many bytes of r it used.
func unescape(b *strings.Builder, r string) int {
	if r == "" {
		return 0
	}
	width := 0
	switch r[0] {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case 'x':
		width = 2
	case 'u':
		width = 4
	case 'U':
		width = 8
	default: // '"', '\\', or invalid (the library has rejected those)
		b.WriteByte(r[0])
	}
	if width == 0 || len(r) < 1+width {
		return 1
	}
	v, err := strconv.ParseUint(r[1:1+width], 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return 1
	}
	b.WriteRune(rune(v))
	return 1 + width
}
