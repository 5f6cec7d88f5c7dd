package featurespec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ParseEventTimeText reads an event time written as text: RFC 3339, or
// PostgreSQL's text form "2006-01-02 15:04:05.999999+00". It returns Unix
// milliseconds.
func ParseEventTimeText(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.Parse("2006-01-02 15:04:05.999999999Z07", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not an RFC 3339 time or Unix milliseconds", s)
	}
	return t.UnixMilli(), nil
}

// EventTimeMillis reads an event time written as a Unix timestamp number:
// milliseconds, or microseconds above 1e14 (Debezium's MicroTimestamp; the
// boundary is the year 5138 in milliseconds).
func EventTimeMillis(n int64) int64 {
	if n > 1e14 || n < -1e14 {
		return n / 1000
	}
	return n
}

// EventTime reads a source field's decoded JSON value as a view's
// event_time, in Unix milliseconds: a string (ParseEventTimeText) or a
// number (EventTimeMillis), as the featurizer reads it.
func EventTime(v any) (int64, error) {
	switch x := v.(type) {
	case nil:
		return 0, errors.New("missing")
	case string:
		return ParseEventTimeText(x)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return EventTimeMillis(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x.String())
		}
		return eventTimeFloat(f)
	case float64:
		return eventTimeFloat(x)
	}
	return 0, fmt.Errorf("a %T is not an RFC 3339 string or Unix milliseconds", v)
}

func eventTimeFloat(f float64) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e18 {
		return 0, fmt.Errorf("%s is out of range", strconv.FormatFloat(f, 'g', -1, 64))
	}
	return EventTimeMillis(int64(f)), nil
}
