// Package core is ingest's application core: it turns PostgreSQL rows in the
// text format (as pgoutput and a text-format snapshot query deliver them) into
// Debezium-style JSON keys and envelopes, applies column masking, and tracks
// table shapes. It does no I/O.
package core

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tributary-ml/tributary/libs/jsonenc"
)

// Type OIDs of the built-in PostgreSQL types the mapping knows.
const (
	OIDBool        = 16
	OIDBytea       = 17
	OIDChar        = 18
	OIDName        = 19
	OIDInt8        = 20
	OIDInt2        = 21
	OIDInt4        = 23
	OIDText        = 25
	OIDOID         = 26
	OIDXID         = 28
	OIDJSON        = 114
	OIDFloat4      = 700
	OIDFloat8      = 701
	OIDMoney       = 790
	OIDBPChar      = 1042
	OIDVarchar     = 1043
	OIDDate        = 1082
	OIDTime        = 1083
	OIDTimestamp   = 1114
	OIDTimestamptz = 1184
	OIDInterval    = 1186
	OIDTimetz      = 1266
	OIDNumeric     = 1700
	OIDUUID        = 2950
	OIDJSONB       = 3802
)

// builtinArrays maps the array types of the built-in scalars to their element type.
var builtinArrays = map[uint32]uint32{
	1000: OIDBool, 1001: OIDBytea, 1002: OIDChar, 1003: OIDName, 1005: OIDInt2, 1007: OIDInt4,
	1009: OIDText, 1014: OIDBPChar, 1015: OIDVarchar, 1016: OIDInt8, 1021: OIDFloat4,
	1022: OIDFloat8, 1028: OIDOID, 1115: OIDTimestamp, 1182: OIDDate, 1183: OIDTime,
	1185: OIDTimestamptz, 1187: OIDInterval, 1231: OIDNumeric, 1270: OIDTimetz,
	2951: OIDUUID, 199: OIDJSON, 3807: OIDJSONB, 791: OIDMoney,
}

// TypeInfo is what the mapping needs to know about a type it has no built-in rule for.
type TypeInfo struct {
	// Elem is the element type of an array type, 0 otherwise.
	Elem uint32
	// Base is the base type of a domain, 0 otherwise.
	Base uint32
	// Delim is the array element delimiter (',' for everything but box).
	Delim byte
}

// Types resolves type OIDs that are not built in (arrays of user types,
// domains, enums). Unknown types are rendered as strings, which is also how
// enums are rendered.
type Types struct {
	mu    sync.RWMutex
	infos map[uint32]TypeInfo
}

// NewTypes returns a registry that knows only the built-in types.
func NewTypes() *Types { return &Types{infos: map[uint32]TypeInfo{}} }

// Known reports whether oid needs no catalog lookup.
func (t *Types) Known(oid uint32) bool {
	if isBuiltinScalar(oid) {
		return true
	}
	if _, ok := builtinArrays[oid]; ok {
		return true
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.infos[oid]
	return ok
}

// Add records what the catalog says about oid.
func (t *Types) Add(oid uint32, info TypeInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.infos[oid] = info
}

func (t *Types) lookup(oid uint32) (TypeInfo, bool) {
	if e, ok := builtinArrays[oid]; ok {
		return TypeInfo{Elem: e, Delim: ','}, true
	}
	if t == nil {
		return TypeInfo{}, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	info, ok := t.infos[oid]
	return info, ok
}

func isBuiltinScalar(oid uint32) bool {
	switch oid {
	case OIDBool, OIDBytea, OIDChar, OIDName, OIDInt8, OIDInt2, OIDInt4, OIDText, OIDOID, OIDXID,
		OIDJSON, OIDFloat4, OIDFloat8, OIDMoney, OIDBPChar, OIDVarchar, OIDDate, OIDTime, OIDTimestamp,
		OIDTimestamptz, OIDInterval, OIDTimetz, OIDNumeric, OIDUUID, OIDJSONB:
		return true
	}
	return false
}

// DecimalMode says how numeric/decimal values are rendered.
type DecimalMode int

const (
	// DecimalString renders numeric exactly, as a JSON string (the default;
	// Debezium's decimal.handling.mode=string).
	DecimalString DecimalMode = iota
	// DecimalDouble renders numeric as a JSON number (may lose precision).
	DecimalDouble
)

// ParseDecimalMode parses "string" or "double".
func ParseDecimalMode(s string) (DecimalMode, error) {
	switch s {
	case "string", "":
		return DecimalString, nil
	case "double":
		return DecimalDouble, nil
	}
	return 0, fmt.Errorf("%q is not one of string, double", s)
}

// Mapper renders text-format PostgreSQL values as JSON. The server must
// produce them with DateStyle=ISO, IntervalStyle=iso_8601, TimeZone=UTC,
// bytea_output=hex and extra_float_digits=3 (the adapters set these).
type Mapper struct {
	Types   *Types
	Decimal DecimalMode
}

// maxArrayDepth bounds nesting in array literals (PostgreSQL allows 6 dimensions).
const maxArrayDepth = 6

// AppendValue appends the JSON rendering of text, a value of type oid, to
// dst. On error dst is returned unchanged.
func (m *Mapper) AppendValue(dst []byte, oid uint32, text []byte) ([]byte, error) {
	return m.appendValue(dst, oid, text, 0)
}

func (m *Mapper) appendValue(dst []byte, oid uint32, text []byte, depth int) ([]byte, error) {
	switch oid {
	case OIDBool:
		switch string(text) {
		case "t", "true":
			return append(dst, "true"...), nil
		case "f", "false":
			return append(dst, "false"...), nil
		}
		return dst, fmt.Errorf("boolean %q: want t or f", text)
	case OIDInt2, OIDInt4, OIDInt8, OIDOID, OIDXID:
		if isCanonicalInteger(text) {
			return append(dst, text...), nil
		}
		n, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil {
			return dst, fmt.Errorf("integer %q: not a 64-bit decimal integer", truncate(text))
		}
		return strconv.AppendInt(dst, n, 10), nil
	case OIDFloat4, OIDFloat8:
		return appendFloat(dst, text, oid == OIDFloat4)
	case OIDNumeric:
		if m.Decimal == DecimalDouble {
			if f, err := strconv.ParseFloat(string(text), 64); err == nil && !isSpecialFloat(text) {
				return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
			}
		}
		if !isNumeric(text) {
			return dst, fmt.Errorf("numeric %q: not a decimal number", text)
		}
		return appendString(dst, text), nil
	case OIDBytea:
		return appendBytea(dst, text)
	case OIDDate:
		return appendDate(dst, text)
	case OIDTimestamp:
		return appendTimestamp(dst, text)
	case OIDTimestamptz:
		return appendTimestamptz(dst, text)
	case OIDTime:
		return appendTime(dst, text)
	case OIDTimetz:
		return appendTimetz(dst, text)
	case OIDChar, OIDName, OIDText, OIDJSON, OIDJSONB, OIDMoney, OIDBPChar, OIDVarchar, OIDInterval, OIDUUID:
		return appendString(dst, text), nil
	}
	info, ok := m.Types.lookup(oid)
	switch {
	case ok && info.Elem != 0:
		if depth >= maxArrayDepth {
			return dst, errors.New("array nested too deeply")
		}
		delim := info.Delim
		if delim == 0 {
			delim = ','
		}
		out, err := m.appendArray(dst, info.Elem, delim, text, depth+1)
		if err != nil {
			return dst, err
		}
		return out, nil
	case ok && info.Base != 0 && info.Base != oid && depth < maxArrayDepth:
		return m.appendValue(dst, info.Base, text, depth+1)
	}
	// Enums and every type without a rule: the text form, as a string.
	return appendString(dst, text), nil
}

// isCanonicalInteger reports whether b is an integer as PostgreSQL prints
// it (and as JSON wants it): optional '-', no leading zeros, at most 18 digits
// so it fits in 64 bits without checking.
func isCanonicalInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isSpecialFloat(b []byte) bool {
	switch string(b) {
	case "NaN", "Infinity", "-Infinity", "inf", "-inf", "+inf", "+Infinity":
		return true
	}
	return false
}

func isNumeric(b []byte) bool {
	if isSpecialFloat(b) {
		return true
	}
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	digits, dot := 0, false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

func appendFloat(dst, text []byte, single bool) ([]byte, error) {
	if isSpecialFloat(text) {
		// JSON has no NaN or infinities: Debezium's JSON converter writes them as strings too.
		return appendString(dst, text), nil
	}
	bits := 64
	if single {
		bits = 32
	}
	f, err := strconv.ParseFloat(string(text), bits)
	if err != nil {
		return dst, fmt.Errorf("float %q: %w", text, errors.Unwrap(err))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		// Spellings ParseFloat accepts but isSpecialFloat does not ("nan", "inf").
		return appendString(dst, text), nil
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits), nil
}

var b64 = base64.StdEncoding

func appendBytea(dst, text []byte) ([]byte, error) {
	if len(text) < 2 || text[0] != '\\' || text[1] != 'x' {
		return dst, fmt.Errorf("bytea: want hex format (\\x...), got %q", truncate(text))
	}
	hx := text[2:]
	if len(hx)%2 != 0 {
		return dst, errors.New("bytea: odd number of hex digits")
	}
	raw := make([]byte, len(hx)/2)
	if _, err := hex.Decode(raw, hx); err != nil {
		return dst, fmt.Errorf("bytea: %w", err)
	}
	dst = append(dst, '"')
	dst = b64.AppendEncode(dst, raw)
	return append(dst, '"'), nil
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// parseYMD parses "YYYY-MM-DD" (four or more year digits) with an optional
// " BC" suffix left in rest, returning the proleptic Gregorian year.
func parseYMD(s string) (year, month, day int, rest string, err error) {
	i := strings.IndexByte(s, '-')
	if i < 4 || len(s) < i+6 || s[i+3] != '-' {
		return 0, 0, 0, "", fmt.Errorf("%q: want YYYY-MM-DD", s)
	}
	if year, err = atoiDigits(s[:i]); err != nil {
		return
	}
	if month, err = atoiDigits(s[i+1 : i+3]); err != nil {
		return
	}
	if day, err = atoiDigits(s[i+4 : i+6]); err != nil {
		return
	}
	if month < 1 || month > 12 || day < 1 || day > 31 {
		return 0, 0, 0, "", fmt.Errorf("%q: month or day out of range", s)
	}
	rest = s[i+6:]
	if strings.HasSuffix(rest, " BC") {
		rest = strings.TrimSuffix(rest, " BC")
		year = 1 - year
	}
	return year, month, day, rest, nil
}

func atoiDigits(s string) (int, error) {
	if len(s) == 0 || len(s) > 9 {
		return 0, fmt.Errorf("%q: not a number", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q: not a number", s)
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// parseClock parses "HH:MM:SS[.ffffff]" and returns microseconds since midnight and the rest.
func parseClock(s string) (int64, string, error) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, "", fmt.Errorf("%q: want HH:MM:SS", s)
	}
	h, err1 := atoiDigits(s[0:2])
	mi, err2 := atoiDigits(s[3:5])
	se, err3 := atoiDigits(s[6:8])
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, "", err
	}
	if h > 24 || mi > 59 || se > 60 {
		return 0, "", fmt.Errorf("%q: clock out of range", s)
	}
	us := int64(h)*3600e6 + int64(mi)*60e6 + int64(se)*1e6
	rest := s[8:]
	if len(rest) > 0 && rest[0] == '.' {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		frac := rest[1:j]
		if len(frac) == 0 || len(frac) > 6 {
			return 0, "", fmt.Errorf("%q: bad fraction", s)
		}
		f, _ := atoiDigits(frac)
		for k := len(frac); k < 6; k++ {
			f *= 10
		}
		us += int64(f)
		rest = rest[j:]
	}
	return us, rest, nil
}

func isInfinity(text []byte) bool {
	return string(text) == "infinity" || string(text) == "-infinity"
}

// appendDate renders a date as days since 1970-01-01 (Debezium io.debezium.time.Date).
func appendDate(dst, text []byte) ([]byte, error) {
	if isInfinity(text) {
		return appendString(dst, text), nil
	}
	y, mo, d, rest, err := parseYMD(string(text))
	if err != nil || rest != "" {
		return dst, fmt.Errorf("date %q: want YYYY-MM-DD", text)
	}
	days := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	return strconv.AppendInt(dst, days, 10), nil
}

// parseTimestamp parses "YYYY-MM-DD HH:MM:SS[.ffffff]" followed by rest; a
// trailing " BC" (after any zone offset) makes the year BC.
func parseTimestamp(text []byte) (time.Time, string, error) {
	s := string(text)
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	y, mo, d, rest, err := parseYMD(s)
	if err != nil || len(rest) < 9 || rest[0] != ' ' {
		return time.Time{}, "", fmt.Errorf("timestamp %q: want YYYY-MM-DD HH:MM:SS", text)
	}
	if bc {
		y = 1 - y
	}
	us, rest, err := parseClock(rest[1:])
	if err != nil {
		return time.Time{}, "", fmt.Errorf("timestamp %q: %w", text, err)
	}
	t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC).Add(time.Duration(us) * time.Microsecond)
	return t, rest, nil
}

// appendTimestamp renders a timestamp without time zone as microseconds since
// the epoch (Debezium io.debezium.time.MicroTimestamp).
func appendTimestamp(dst, text []byte) ([]byte, error) {
	if isInfinity(text) {
		return appendString(dst, text), nil
	}
	t, rest, err := parseTimestamp(text)
	if err != nil {
		return dst, err
	}
	if rest != "" {
		return dst, fmt.Errorf("timestamp %q: unexpected %q", text, rest)
	}
	return strconv.AppendInt(dst, t.UnixMicro(), 10), nil
}

// parseOffset parses "+HH[:MM[:SS]]" or "-HH..." into seconds east of UTC.
func parseOffset(s string) (int, error) {
	if len(s) < 3 || (s[0] != '+' && s[0] != '-') {
		return 0, fmt.Errorf("zone offset %q: want +HH[:MM]", s)
	}
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	parts := strings.Split(s[1:], ":")
	if len(parts) > 3 {
		return 0, fmt.Errorf("zone offset %q: want +HH[:MM[:SS]]", s)
	}
	secs := 0
	mult := 3600
	for _, p := range parts {
		if len(p) != 2 {
			return 0, fmt.Errorf("zone offset %q: want two digits per part", s)
		}
		n, err := atoiDigits(p)
		if err != nil {
			return 0, fmt.Errorf("zone offset %q: %w", s, err)
		}
		secs += n * mult
		mult /= 60
	}
	return sign * secs, nil
}

// appendTimestamptz renders a timestamp with time zone as an ISO-8601 string
// in UTC (Debezium io.debezium.time.ZonedTimestamp).
func appendTimestamptz(dst, text []byte) ([]byte, error) {
	if isInfinity(text) {
		return appendString(dst, text), nil
	}
	t, rest, err := parseTimestamp(text)
	if err != nil {
		return dst, err
	}
	off, err := parseOffset(rest)
	if err != nil {
		return dst, fmt.Errorf("timestamptz %q: %w", text, err)
	}
	t = t.Add(-time.Duration(off) * time.Second)
	return appendISO(dst, t), nil
}

func appendISO(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	if y := t.Year(); y < 0 || y > 9999 {
		// RFC 3339 has no room for these years: use ISO 8601's expanded form.
		if y < 0 {
			dst = append(dst, '-')
			y = -y
		} else {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(y), 10)
		dst = t.AppendFormat(dst, "-01-02T15:04:05.999999Z")
	} else {
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.999999Z")
	}
	return append(dst, '"')
}

// appendTime renders a time without zone as microseconds since midnight (Debezium MicroTime).
func appendTime(dst, text []byte) ([]byte, error) {
	us, rest, err := parseClock(string(text))
	if err != nil || rest != "" {
		return dst, fmt.Errorf("time %q: want HH:MM:SS[.ffffff]", text)
	}
	return strconv.AppendInt(dst, us, 10), nil
}

// appendTimetz renders a time with zone as an ISO-8601 string in UTC (Debezium ZonedTime).
func appendTimetz(dst, text []byte) ([]byte, error) {
	us, rest, err := parseClock(string(text))
	if err != nil {
		return dst, fmt.Errorf("timetz %q: %w", text, err)
	}
	off, err := parseOffset(rest)
	if err != nil {
		return dst, fmt.Errorf("timetz %q: %w", text, err)
	}
	day := int64(86400e6)
	us = ((us-int64(off)*1e6)%day + day) % day
	t := time.UnixMicro(us).UTC()
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, "15:04:05.999999Z")
	return append(dst, '"'), nil
}

// appendArray renders a PostgreSQL array literal as a JSON array, elements
// rendered by their own type.
func (m *Mapper) appendArray(dst []byte, elem uint32, delim byte, text []byte, depth int) ([]byte, error) {
	s := text
	if len(s) > 0 && s[0] == '[' {
		// Explicit bounds, e.g. "[0:2]={1,2,3}": JSON arrays have none.
		i := indexByte(s, '=')
		if i < 0 {
			return dst, fmt.Errorf("array %q: bounds without '='", truncate(text))
		}
		s = s[i+1:]
	}
	p := arrayParser{m: m, elem: elem, delim: delim, s: s}
	out, err := p.parse(dst, depth)
	if err != nil {
		return dst, fmt.Errorf("array %q: %w", truncate(text), err)
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return dst, fmt.Errorf("array %q: trailing data", truncate(text))
	}
	return out, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

type arrayParser struct {
	m     *Mapper
	elem  uint32
	delim byte
	s     []byte
	i     int
	buf   []byte
}

func (p *arrayParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *arrayParser) parse(dst []byte, depth int) ([]byte, error) {
	if depth > maxArrayDepth+1 {
		return dst, errors.New("nested too deeply")
	}
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return dst, errors.New("want '{'")
	}
	p.i++
	dst = append(dst, '[')
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return append(dst, ']'), nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		p.skipSpace()
		if p.i >= len(p.s) {
			return dst, errors.New("unterminated")
		}
		var err error
		switch p.s[p.i] {
		case '{':
			dst, err = p.parse(dst, depth+1)
		case '"':
			dst, err = p.quoted(dst)
		default:
			dst, err = p.unquoted(dst)
		}
		if err != nil {
			return dst, err
		}
		p.skipSpace()
		if p.i >= len(p.s) {
			return dst, errors.New("unterminated")
		}
		switch p.s[p.i] {
		case p.delim:
			p.i++
		case '}':
			p.i++
			return append(dst, ']'), nil
		default:
			return dst, fmt.Errorf("unexpected %q at %d", p.s[p.i], p.i)
		}
	}
}

func (p *arrayParser) quoted(dst []byte) ([]byte, error) {
	p.i++ // opening quote
	p.buf = p.buf[:0]
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '\\':
			if p.i+1 >= len(p.s) {
				return dst, errors.New("dangling backslash")
			}
			p.buf = append(p.buf, p.s[p.i+1])
			p.i += 2
		case '"':
			p.i++
			return p.m.appendValue(dst, p.elem, p.buf, maxArrayDepth)
		default:
			p.buf = append(p.buf, c)
			p.i++
		}
	}
	return dst, errors.New("unterminated quoted element")
}

func (p *arrayParser) unquoted(dst []byte) ([]byte, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != p.delim && p.s[p.i] != '}' && p.s[p.i] != '{' && p.s[p.i] != '"' {
		p.i++
	}
	tok := p.s[start:p.i]
	for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
		tok = tok[:len(tok)-1]
	}
	if len(tok) == 0 {
		return dst, errors.New("empty element")
	}
	if strings.EqualFold(string(tok), "NULL") {
		return append(dst, "null"...), nil
	}
	// Elements are scalars: depth maxArrayDepth stops them being read as nested arrays.
	return p.m.appendValue(dst, p.elem, tok, maxArrayDepth)
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(dst, s []byte) []byte { return jsonenc.AppendBytes(dst, s, false) }

// AppendString appends s as a JSON string.
func AppendString(dst []byte, s string) []byte { return jsonenc.AppendString(dst, s, false) }
