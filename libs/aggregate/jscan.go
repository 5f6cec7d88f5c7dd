package aggregate

import (
	"bytes"
	"unicode/utf8"
)

// A hand-written JSON scanner for the router's hot path: it validates a
// record's syntax and picks out only the fields the views read, without
// building maps of every column. It is deliberately conservative: whenever
// a record has something encoding/json would treat specially (escapes in
// a key or in a value read, invalid UTF-8, a key that only case-folds to
// an envelope field, a repeated envelope field, a wrong type in an
// envelope field, an object or array in a column read, deep nesting,
// trailing data) it gives up and the router decodes the record with
// encoding/json instead, so results never differ (FuzzScanMatchesEncodingJSON).

const maxScanDepth = 64

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the string starting at b[i] == '"'. plain reports that
// it has no escapes and is valid UTF-8, so its bytes are its value.
func scanString(b []byte, i int) (end int, plain, ok bool) {
	i++
	plain = true
	ascii := true
	start := i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:i]) {
				plain = false
			}
			return i + 1, plain, true
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return 0, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, false, false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return 0, false, false
					}
				}
				i += 6
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			i++
		}
	}
	return 0, false, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanNumber scans a JSON number at b[i]; integer reports it has neither
// fraction nor exponent.
func scanNumber(b []byte, i int) (end int, integer, ok bool) {
	integer = true
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, false, false
	}
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false, false
		}
	}
	return i, integer, true
}

// scanValue scans the value at b[i] (no leading space) and returns its
// end and its first byte ('"', '-' or a digit, 't', 'f', 'n', '{', '[').
func scanValue(b []byte, i, depth int) (end int, kind byte, ok bool) {
	if i >= len(b) || depth > maxScanDepth {
		return 0, 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok = scanString(b, i)
		return end, '"', ok
	case c == '-' || c >= '0' && c <= '9':
		end, _, ok = scanNumber(b, i)
		return end, '0', ok
	case c == 't':
		return literal(b, i, "true", 't')
	case c == 'f':
		return literal(b, i, "false", 'f')
	case c == 'n':
		return literal(b, i, "null", 'n')
	case c == '{':
		end, ok = scanObject(b, i, depth, nil)
		return end, '{', ok
	case c == '[':
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, '[', true
		}
		for {
			if i, _, ok = scanValue(b, i, depth+1); !ok {
				return 0, 0, false
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, 0, false
			}
			if b[i] == ']' {
				return i + 1, '[', true
			}
			if b[i] != ',' {
				return 0, 0, false
			}
			i = skipSpace(b, i+1)
		}
	}
	return 0, 0, false
}

func literal(b []byte, i int, lit string, kind byte) (int, byte, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, 0, false
	}
	return i + len(lit), kind, true
}

// member is called for each member of an object: key is the raw key
// (between the quotes, plain reports no escapes and valid UTF-8) and
// b[vs:ve] its value, of kind (see scanValue). Returning false gives up.
type member func(key []byte, plain bool, b []byte, vs, ve int, kind byte) bool

// scanObject scans the object at b[i] == '{', calling fn (when not nil)
// for each member.
func scanObject(b []byte, i, depth int, fn member) (end int, ok bool) {
	if depth > maxScanDepth {
		return 0, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		ke, plain, ok := scanString(b, i)
		if !ok {
			return 0, false
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		vs := skipSpace(b, i+1)
		ve, kind, ok := scanValue(b, vs, depth+1)
		if !ok {
			return 0, false
		}
		if fn != nil && !fn(key, plain, b, vs, ve, kind) {
			return 0, false
		}
		i = skipSpace(b, ve)
		if i >= len(b) {
			return 0, false
		}
		if b[i] == '}' {
			return i + 1, true
		}
		if b[i] != ',' {
			return 0, false
		}
		i = skipSpace(b, i+1)
	}
}

// scanRow scans the row object b[vs:ve] and fills out[k] with the value
// of cols[k] (null when absent; the last one when repeated). It gives up
// on an escaped or non-UTF-8 key, and on a column read whose value is an
// escaped string, an object or an array.
func scanRow(b []byte, vs, ve int, cols []string, out []colVal) bool {
	for k := range out {
		out[k] = colVal{}
	}
	end, ok := scanObject(b[:ve], vs, 1, func(key []byte, plain bool, b []byte, s, e int, kind byte) bool {
		if !plain {
			return false
		}
		for k, c := range cols {
			if string(key) != c {
				continue
			}
			switch kind {
			case '"':
				_, p, _ := scanString(b, s)
				if !p {
					return false
				}
				out[k] = colVal{kind: kindString, text: b[s+1 : e-1]}
			case '0':
				out[k] = colVal{kind: kindNumber, text: b[s:e]}
			case 't':
				out[k] = colVal{kind: kindTrue}
			case 'f':
				out[k] = colVal{kind: kindFalse}
			case 'n':
				out[k] = colVal{kind: kindNull}
			default:
				return false
			}
		}
		return true
	})
	return ok && end == ve
}

// fastEnvelope is what the router reads of a Debezium change event.
type fastEnvelope struct {
	op                     []byte
	hasBefore, hasAfter    bool
	beforeS, beforeE       int
	afterS, afterE         int
	sequence               []byte
	seqBuf                 []byte // sequence unescaped, when it had escapes
	hasPayload             bool
	payloadS, payloadE     int
	seen                   uint16
	opNull, sequenceIsNull bool
}

var envelopeFields = [...]string{"before", "after", "source", "op", "ts_ms", "payload"}

var sourceStringFields = [...]string{"version", "connector", "name", "snapshot", "db", "sequence", "schema", "table"}
var sourceIntFields = [...]string{"ts_ms", "txId", "lsn"}

// isInt64 reports whether the number text fits an int64 as encoding/json
// would decode it (no fraction or exponent, in range).
func isInt64(t []byte) bool {
	_, integer, ok := scanNumber(t, 0)
	if !ok || !integer {
		return false
	}
	neg := t[0] == '-'
	d := t
	if neg {
		d = t[1:]
	}
	const maxDigits = "9223372036854775807"
	if len(d) < len(maxDigits) {
		return true
	}
	if len(d) > len(maxDigits) {
		return false
	}
	lim := maxDigits
	if neg {
		lim = "9223372036854775808"
	}
	return string(d) <= lim
}

// scanEnvelope scans the Debezium envelope object b[s:e] (payload marks
// the inner envelope of {"schema":..., "payload":{...}}, whose own
// "payload" key is an unknown field).
func scanEnvelope(b []byte, s, e int, inner bool, env *fastEnvelope) bool {
	*env = fastEnvelope{seqBuf: env.seqBuf[:0]}
	end, ok := scanObject(b[:e], s, 0, func(key []byte, plain bool, b []byte, vs, ve int, kind byte) bool {
		if !plain {
			return false
		}
		field := -1
		for k, f := range envelopeFields {
			if inner && f == "payload" {
				continue
			}
			if string(key) == f {
				field = k
				break
			}
			if bytes.EqualFold(key, []byte(f)) {
				return false
			}
		}
		if field < 0 {
			return true
		}
		if env.seen&(1<<field) != 0 {
			return false
		}
		env.seen |= 1 << field
		switch envelopeFields[field] {
		case "before", "after", "payload":
			if kind != '{' && kind != 'n' {
				return false
			}
			present := kind == '{'
			switch envelopeFields[field] {
			case "before":
				env.hasBefore, env.beforeS, env.beforeE = present, vs, ve
			case "after":
				env.hasAfter, env.afterS, env.afterE = present, vs, ve
			default:
				env.hasPayload, env.payloadS, env.payloadE = present, vs, ve
			}
		case "op":
			switch kind {
			case 'n':
				env.opNull = true
			case '"':
				_, p, _ := scanString(b, vs)
				if !p {
					return false
				}
				env.op = b[vs+1 : ve-1]
			default:
				return false
			}
		case "ts_ms":
			if kind == 'n' {
				return true
			}
			if kind != '0' || !isInt64(b[vs:ve]) {
				return false
			}
		case "source":
			if kind == 'n' {
				return true
			}
			if kind != '{' {
				return false
			}
			var seen uint16
			_, ok := scanObject(b[:ve], vs, 1, func(key []byte, plain bool, b []byte, s, e int, kind byte) bool {
				if !plain {
					return false
				}
				for k, f := range sourceStringFields {
					if string(key) == f {
						if seen&(1<<k) != 0 {
							return false
						}
						seen |= 1 << k
						if kind == 'n' {
							if f == "sequence" {
								env.sequence = nil
							}
							return true
						}
						if kind != '"' {
							return false
						}
						_, plain, _ := scanString(b, s) // syntax checked by scanObject
						if f != "sequence" {
							return true // only checked to be a string
						}
						if plain {
							env.sequence = b[s+1 : e-1]
							return true
						}
						// Debezium's sequence is a JSON array in a string:
						// its quotes are always escaped.
						var ok bool
						env.seqBuf, ok = unescapeSimple(env.seqBuf[:0], b[s+1:e-1])
						env.sequence = env.seqBuf
						return ok
					}
					if bytes.EqualFold(key, []byte(f)) {
						return false
					}
				}
				for _, f := range sourceIntFields {
					if string(key) == f {
						return kind == 'n' || kind == '0' && isInt64(b[s:e])
					}
					if bytes.EqualFold(key, []byte(f)) {
						return false
					}
				}
				return true
			})
			return ok
		}
		return true
	})
	return ok && end == e
}

// unescapeSimple appends the value of the JSON string body raw (between
// its quotes, syntax already checked) to dst, if raw is ASCII and escapes
// only quotes, backslashes and slashes; otherwise it reports false and the
// record goes to encoding/json.
func unescapeSimple(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= utf8.RuneSelf:
			return dst, false
		case c == '\\':
			if i+1 >= len(raw) {
				return dst, false
			}
			switch raw[i+1] {
			case '"', '\\', '/':
				dst = append(dst, raw[i+1])
				i++
			default:
				return dst, false
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}
