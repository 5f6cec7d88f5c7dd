package featurespec

import (
	"encoding/json"
	"testing"
)

func TestEventTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want int64
		err  bool
	}{
		{"rfc3339", "2026-12-01T10:00:00.250Z", 1796119200250, false},
		{"postgres text", "2026-12-01 10:00:00.25+00", 1796119200250, false},
		{"millis", json.Number("1796119200250"), 1796119200250, false},
		{"micros", json.Number("1796119200250123"), 1796119200250, false},
		{"float millis", 1796119200250.0, 1796119200250, false},
		{"fractional number", json.Number("1796119200250.5"), 1796119200250, false},
		{"missing", nil, 0, true},
		{"not a time", "yesterday", 0, true},
		{"bool", true, 0, true},
		{"nan", json.Number("1e400"), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EventTime(tc.v)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("EventTime(%v) = %d, %v; want %d, error %v", tc.v, got, err, tc.want, tc.err)
			}
		})
	}
}
