package aggregate

import (
	"bytes"
	"fmt"
	"testing"
)

var scanCols = []string{"user_id", "amount", "created_at", "ts", "page", "n"}

func sameFields(a, b []colVal) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d fields, want %d", len(a), len(b))
	}
	for k := range a {
		if a[k].kind != b[k].kind || !bytes.Equal(a[k].text, b[k].text) {
			return fmt.Errorf("%s: scanner %d %q, encoding/json %d %q", scanCols[k], a[k].kind, a[k].text, b[k].kind, b[k].text)
		}
	}
	return nil
}

// FuzzScanMatchesEncodingJSON: whatever the scanner accepts, encoding/json
// accepts too, with the same values in the columns read; what it gives up
// on goes to encoding/json anyway.
func FuzzScanMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"u1","amount":"10.50","created_at":"2026-11-02T10:00:00Z","x":[1,{"a":null}]}`,
		`{"op":"u","before":{"user_id":1,"amount":"1"},"after":{"user_id":1,"amount":"2","ts":5},"source":{"sequence":"[\"1\",\"2\"]","lsn":7,"txId":null},"ts_ms":3}`,
		`{"schema":{},"payload":{"op":"c","after":{"user_id":"é","n":-1.5e3,"page":true}}}`,
		` {"op":"d","before":{"user_id":"a\"b"},"after":null} `,
		`{"OP":"c","after":{}}`,
		`{"op":"c","after":{"user_id":1},"source":{"sequence":"[\"1\\/\\\\\",\"2\"]","version":"a\u00e9\n","db":"\ud800"}}`,
		`{"op":"c","after":{"user_id":"u"},"after":{"amount":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tp := &topicPlan{cols: scanCols}
		r := &Router{}
		// As a JSON row.
		got := make([]colVal, len(scanCols))
		if s, e := trimmed(b); s < e && b[s] == '{' && scanRow(b, s, e, scanCols, got) {
			var m map[string]any
			if err := decodeJSON(b, &m); err != nil || m == nil {
				t.Fatalf("scanner accepted %q, encoding/json: %v", b, err)
			}
			want, err := fieldsOf(m, scanCols, make([]colVal, len(scanCols)))
			if err != nil {
				t.Fatal(err)
			}
			if err := sameFields(got, want); err != nil {
				t.Fatalf("row %q: %v", b, err)
			}
		}
		// As a Debezium change event.
		c, ok := r.scanDebezium(tp, b)
		if !ok {
			return
		}
		var e envelope
		if err := decodeJSON(b, &e); err != nil {
			t.Fatalf("scanner accepted envelope %q, encoding/json: %v", b, err)
		}
		env := &e.Envelope
		if env.Op == "" && e.Payload != nil {
			env = e.Payload
		}
		if c.op != env.Op || c.sequence != env.Source.Sequence {
			t.Fatalf("%q: scanner op %q sequence %q, encoding/json %q %q", b, c.op, c.sequence, env.Op, env.Source.Sequence)
		}
		for _, img := range []struct {
			name string
			got  []colVal
			want map[string]any
		}{{"before", c.before, env.Before}, {"after", c.after, env.After}} {
			if (img.got == nil) != (img.want == nil) {
				t.Fatalf("%q: %s present: scanner %v, encoding/json %v", b, img.name, img.got != nil, img.want != nil)
			}
			if img.want == nil {
				continue
			}
			want, err := fieldsOf(img.want, scanCols, make([]colVal, len(scanCols)))
			if err != nil {
				t.Fatal(err)
			}
			if err := sameFields(img.got, want); err != nil {
				t.Fatalf("%q %s: %v", b, img.name, err)
			}
		}
	})
}

// TestScannerReadsIngestEvents: change events as ingest writes them (the
// source.sequence string always has escaped quotes) take the scanner's
// path, not encoding/json's.
func TestScannerReadsIngestEvents(t *testing.T) {
	b := []byte(`{"before":null,"after":{"user_id":7,"amount":"12.50"},"op":"c","ts_ms":1,` +
		`"source":{"version":"tributary","connector":"postgresql","name":"tributary","db":"tributary","schema":"public","table":"transactions",` +
		`"snapshot":"false","txId":5,"lsn":22,"sequence":"[\"21\",\"22\"]","ts_ms":1}}`)
	r := &Router{}
	c, ok := r.scanDebezium(&topicPlan{cols: scanCols}, b)
	if !ok {
		t.Fatal("the scanner gave up on an ingest change event")
	}
	if c.sequence != `["21","22"]` {
		t.Fatalf("sequence %q", c.sequence)
	}
}
