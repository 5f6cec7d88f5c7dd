package aggregate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
)

// change is one row's contribution to a view: a row added (add) or a
// previous image retracted (!add); row holds the topic plan's fields.
type change struct {
	row []colVal
	add bool
}

// envelope is a Debezium change event, with or without the JSON
// converter's schema wrapper ({"schema":..., "payload":{...}}).
type envelope struct {
	cdc.Envelope
	Payload *cdc.Envelope `json:"payload"`
}

// decodeJSON parses a JSON object keeping numbers exact (json.Number), so
// large integer keys survive.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// decodeDebezium parses and checks a Debezium change event with
// encoding/json (the router's fallback when its scanner gives up).
func decodeDebezium(b []byte) (*cdc.Envelope, error) {
	var e envelope
	if err := decodeJSON(b, &e); err != nil {
		return nil, fmt.Errorf("debezium envelope: %w", err)
	}
	env := &e.Envelope
	if env.Op == "" && e.Payload != nil {
		env = e.Payload
	}
	if err := checkOp(env.Op, env.After != nil); err != nil {
		return nil, err
	}
	return env, nil
}

// checkOp checks a change event's op and that creates, reads and updates
// carry an after image.
func checkOp(op string, hasAfter bool) error {
	switch op {
	case cdc.OpCreate, cdc.OpRead:
		if !hasAfter {
			return fmt.Errorf("debezium envelope: op %q without after", op)
		}
	case cdc.OpUpdate:
		if !hasAfter {
			return errors.New("debezium envelope: op \"u\" without after")
		}
	case cdc.OpDelete, cdc.OpTruncate:
	case "":
		return errors.New("debezium envelope: op is missing")
	default:
		return fmt.Errorf("debezium envelope: op %q is not one of c, r, u, d, t", op)
	}
	return nil
}

// changesFor lists (into buf) the changes an event makes for a view
// selecting ops: creates and snapshot reads add the after image; updates
// retract the before image (when the event carries one) and add the after
// image; deletes retract the before image. Truncates and unselected ops
// make no change.
func changesFor(c *dbzChange, ops []string, buf []change) []change {
	if !slices.Contains(ops, c.op) {
		return nil
	}
	switch c.op {
	case cdc.OpCreate, cdc.OpRead:
		return append(buf, change{row: c.after, add: true})
	case cdc.OpUpdate:
		if c.before != nil {
			buf = append(buf, change{row: c.before})
		}
		return append(buf, change{row: c.after, add: true})
	case cdc.OpDelete:
		if c.before != nil {
			return append(buf, change{row: c.before})
		}
	}
	return nil
}

// eventTimeOf reads a view's event-time field: an RFC 3339 string or a
// Unix timestamp number. Numbers are milliseconds; numbers above 1e14 are
// taken as microseconds (Debezium's MicroTimestamp), which puts the
// boundary in the year 5138 for milliseconds.
func eventTimeOf(c colVal, field string) (int64, error) {
	switch c.kind {
	case kindNull:
		return 0, fmt.Errorf("event time field %q is missing", field)
	case kindString:
		ms, err := featurespec.ParseEventTimeText(string(c.text))
		if err != nil {
			return 0, fmt.Errorf("event time field %q: %w", field, err)
		}
		return ms, nil
	case kindNumber:
		if i, ok := parseInt(c.text); ok {
			return featurespec.EventTimeMillis(i), nil
		}
		f, err := strconv.ParseFloat(string(c.text), 64)
		if err != nil {
			return 0, fmt.Errorf("event time field %q: %q is not a number", field, c.text)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e18 {
			return 0, fmt.Errorf("event time field %q: %v is out of range", field, f)
		}
		return featurespec.EventTimeMillis(int64(f)), nil
	}
	return 0, fmt.Errorf("event time field %q: a %s is not an RFC 3339 string or Unix milliseconds", field, kindName(c.kind))
}

func kindName(k byte) string {
	switch k {
	case kindTrue, kindFalse:
		return "bool"
	case kindRaw:
		return "JSON object or array"
	}
	return "value"
}

// parseInt parses a decimal integer as json.Number.Int64 would.
func parseInt(t []byte) (int64, bool) {
	if len(t) == 0 {
		return 0, false
	}
	if len(t) > 18 {
		i, err := strconv.ParseInt(string(t), 10, 64)
		return i, err == nil
	}
	neg := t[0] == '-'
	d := t
	if neg {
		d = t[1:]
	}
	if len(d) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
