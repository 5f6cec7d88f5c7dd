package featurespec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Condition is one "<column> <op> <literal>" of a source filter.
type Condition struct {
	Column string
	Op     string
	// Value is the literal: float64, string, bool or nil.
	Value any
}

var filterOps = []string{"==", "!=", "<=", ">=", "<", ">"}

// ParseFilter parses conditions joined by " and ".
func ParseFilter(s string) ([]Condition, error) {
	var out []Condition
	for i, part := range splitAnd(s) {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("condition %d is empty", i+1)
		}
		var c Condition
		found := false
		for _, op := range filterOps {
			if j := strings.Index(part, op); j > 0 {
				c.Column = strings.TrimSpace(part[:j])
				c.Op = op
				lit := strings.TrimSpace(part[j+len(op):])
				v, err := parseLiteral(lit)
				if err != nil {
					return nil, fmt.Errorf("condition %q: %w", part, err)
				}
				c.Value = v
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("condition %q: want <column> <op> <literal> with op one of == != < <= > >=", part)
		}
		if c.Column == "" || strings.ContainsAny(c.Column, " '\"") {
			return nil, fmt.Errorf("condition %q: %q is not a column name", part, c.Column)
		}
		if _, isNum := c.Value.(float64); !isNum && c.Op != "==" && c.Op != "!=" {
			if _, isStr := c.Value.(string); !isStr {
				return nil, fmt.Errorf("condition %q: %s needs a number or string", part, c.Op)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// splitAnd splits on the word "and" outside quotes.
func splitAnd(s string) []string {
	var parts []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		case ch == ' ' && strings.HasPrefix(s[i:], " and "):
			parts = append(parts, s[start:i])
			i += len(" and ") - 1
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func parseLiteral(s string) (any, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("missing literal")
	case s == "null":
		return nil, nil
	case s == "true", s == "false":
		return s == "true", nil
	case len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0]:
		return s[1 : len(s)-1], nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("literal %s is not a number, a quoted string, true, false or null", s)
	}
	return f, nil
}

// Match reports whether row satisfies every condition.
func Match(conds []Condition, row map[string]any) bool {
	for _, c := range conds {
		if !c.Match(row) {
			return false
		}
	}
	return true
}

// Match reports whether row satisfies c. A missing column is null.
// Numbers compare numerically (numeric strings too, as Debezium renders
// decimals); strings compare as text; a comparison of mismatched types is
// false (except !=, which is true).
func (c Condition) Match(row map[string]any) bool {
	v := row[c.Column]
	cmp, ok := compare(v, c.Value)
	switch c.Op {
	case "==":
		return ok && cmp == 0
	case "!=":
		return !ok || cmp != 0
	case "<":
		return ok && cmp < 0
	case "<=":
		return ok && cmp <= 0
	case ">":
		return ok && cmp > 0
	case ">=":
		return ok && cmp >= 0
	}
	return false
}

func compare(v, lit any) (int, bool) {
	switch l := lit.(type) {
	case nil:
		return 0, v == nil
	case bool:
		b, ok := v.(bool)
		if !ok || b != l {
			return 1, ok
		}
		return 0, true
	case float64:
		var x float64
		switch t := v.(type) {
		case float64:
			x = t
		case json.Number:
			f, err := t.Float64()
			if err != nil {
				return 0, false
			}
			x = f
		case string:
			f, err := strconv.ParseFloat(t, 64)
			if err != nil {
				return 0, false
			}
			x = f
		case int64:
			x = float64(t)
		case int:
			x = float64(t)
		default:
			return 0, false
		}
		switch {
		case x < l:
			return -1, true
		case x > l:
			return 1, true
		}
		return 0, true
	case string:
		var s string
		switch t := v.(type) {
		case string:
			s = t
		case json.Number:
			s = t.String()
		default:
			return 0, false
		}
		return strings.Compare(s, l), true
	}
	return 0, false
}
