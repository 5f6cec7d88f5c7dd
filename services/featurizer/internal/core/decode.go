package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// change is one row's contribution to a view: a row added (add) or a
// previous image retracted (!add).
type change struct {
	row map[string]any
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

// decodeDebezium parses and checks a Debezium change event.
func decodeDebezium(b []byte) (*cdc.Envelope, error) {
	var e envelope
	if err := decodeJSON(b, &e); err != nil {
		return nil, fmt.Errorf("debezium envelope: %w", err)
	}
	env := &e.Envelope
	if env.Op == "" && e.Payload != nil {
		env = e.Payload
	}
	switch env.Op {
	case cdc.OpCreate, cdc.OpRead:
		if env.After == nil {
			return nil, fmt.Errorf("debezium envelope: op %q without after", env.Op)
		}
	case cdc.OpUpdate:
		if env.After == nil {
			return nil, errors.New("debezium envelope: op \"u\" without after")
		}
	case cdc.OpDelete, cdc.OpTruncate:
	case "":
		return nil, errors.New("debezium envelope: op is missing")
	default:
		return nil, fmt.Errorf("debezium envelope: op %q is not one of c, r, u, d, t", env.Op)
	}
	return env, nil
}

// changesFor lists the changes env makes for a view selecting ops: creates
// and snapshot reads add the after image; updates retract the before image
// (when the event carries one) and add the after image; deletes retract the
// before image. Truncates and unselected ops make no change.
func changesFor(env *cdc.Envelope, ops []string) []change {
	selected := false
	for _, o := range ops {
		if o == env.Op {
			selected = true
			break
		}
	}
	if !selected {
		return nil
	}
	switch env.Op {
	case cdc.OpCreate, cdc.OpRead:
		return []change{{row: env.After, add: true}}
	case cdc.OpUpdate:
		if env.Before != nil {
			return []change{{row: env.Before}, {row: env.After, add: true}}
		}
		return []change{{row: env.After, add: true}}
	case cdc.OpDelete:
		if env.Before != nil {
			return []change{{row: env.Before}}
		}
	}
	return nil
}

// eventTime reads a view's event-time field from row: an RFC 3339 string
// or a Unix timestamp number. Numbers are milliseconds; numbers above 1e14
// are taken as microseconds (Debezium's MicroTimestamp), which puts the
// boundary in the year 5138 for milliseconds.
func eventTime(row map[string]any, field string) (int64, error) {
	v, ok := row[field]
	if !ok || v == nil {
		return 0, fmt.Errorf("event time field %q is missing", field)
	}
	var f float64
	switch x := v.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			// Postgres text form "2006-01-02 15:04:05.999999+00".
			t, err = time.Parse("2006-01-02 15:04:05.999999999Z07", x)
		}
		if err != nil {
			return 0, fmt.Errorf("event time field %q: %q is not an RFC 3339 time or Unix milliseconds", field, x)
		}
		return t.UnixMilli(), nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return scaleMs(i), nil
		}
		g, err := x.Float64()
		if err != nil {
			return 0, fmt.Errorf("event time field %q: %q is not a number", field, x)
		}
		f = g
	case float64:
		f = x
	default:
		return 0, fmt.Errorf("event time field %q: %T is not an RFC 3339 string or Unix milliseconds", field, v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e18 {
		return 0, fmt.Errorf("event time field %q: %v is out of range", field, f)
	}
	return scaleMs(int64(f)), nil
}

func scaleMs(n int64) int64 {
	if n > 1e14 || n < -1e14 {
		return n / 1000
	}
	return n
}

// joinKey renders one join key value as text: strings as they are, whole
// numbers without a fraction.
func joinKey(row map[string]any, key string) (string, error) {
	v, ok := row[key]
	if !ok || v == nil {
		return "", fmt.Errorf("join key %q is missing", key)
	}
	switch x := v.(type) {
	case string:
		if x == "" {
			return "", fmt.Errorf("join key %q is empty", key)
		}
		return x, nil
	case json.Number:
		return x.String(), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), nil
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("join key %q: %T is not a string or number", key, v)
}

// entityOf builds a row's entity id from the view's join keys.
func entityOf(row map[string]any, v *featurespec.View) (string, error) {
	if len(v.Entity.JoinKeys) == 1 {
		return joinKey(row, v.Entity.JoinKeys[0])
	}
	parts := make([]string, len(v.Entity.JoinKeys))
	for i, k := range v.Entity.JoinKeys {
		s, err := joinKey(row, k)
		if err != nil {
			return "", err
		}
		parts[i] = s
	}
	return tiles.EntityID(parts), nil
}
