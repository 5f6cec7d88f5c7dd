package stream

import (
	"reflect"
	"testing"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

func seeds() [][]byte {
	recs, _ := benchRecords(5)
	return append(recs,
		[]byte(`{"prediction_id":"a","model":"m","version":"v","variant":"x","features":{"f":1e3,"g":-0.5},"defaulted":["g"],"score":0.25,"latency_ms":3,"ts_ms":1793527200000,"error":"boom"}`),
		[]byte(`{"prediction_id":"a\u00e9","model":"m"}`),
		[]byte(`{"prediction_id":"s","parent_id":"a","model":"m","role":"shadow","score":0.5}`),
		[]byte(`{"prediction_id":"s","parent_id":7}`),
		[]byte(`{"prediction_id":"s","parent_id":"a","parent_id":"b"}`),
		[]byte(`{"model":"m","MODEL":"n"}`),
		[]byte(`{"model":"m","ts_ms":1.5}`),
		[]byte(`{"model":"m","features":null}`),
		[]byte(`{"model":"m","features":{"a":1},"features":{"b":2}}`),
		[]byte(` {"model" : "m" , "defaulted" : [ ] , "entity_keys":{"u":"1"}, "outputs":{"p":0.5}} `),
		[]byte(`{"model":"m"} x`),
		[]byte(`{"model":"m|x"}`),
		[]byte(`{"model":"\xff"}`),
		[]byte(`[]`),
		// Feature names where the previous record had them, elsewhere, and repeated.
		[]byte(`{"model":"m","features":{"a":1,"b":2}}`),
		[]byte(`{"model":"m","features":{"b":1,"b":2}}`),
		[]byte(`{"model":"m","features":{"a":1,"b":2}}`),
		[]byte(`{"model":"m","features":{"a":1,"a":2}}`),
		[]byte(`{"model":"m","features":{"a":1,"b":2,"c":3}}`),
		[]byte(`{"model":"m","features":{"a":1,"b":2,"b":3}}`),
		[]byte(`{"model":"m","features":{"a":1}}`),
		[]byte(`{"model":"m","features":{"c":1,"a":2,"b":3}}`),
	)
}

// TestDecoderMatchesEncodingJSON checks the fast path on the seeds.
func TestDecoderMatchesEncodingJSON(t *testing.T) {
	d := newDecoder()
	for _, b := range seeds() {
		compareDecoders(t, d, b)
	}
}

func compareDecoders(t *testing.T, d *decoder, b []byte) {
	t.Helper()
	var want predlog.Prediction
	wantErr := DecodePrediction(b, &want)
	got, feats, err := d.decode(b)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: decoder err %v, encoding/json err %v", b, err, wantErr)
	}
	if err != nil {
		return
	}
	if want.Features == nil {
		want.Features = map[string]float64{}
	}
	g := *got
	g.Features = map[string]float64{}
	for _, f := range feats {
		if _, dup := g.Features[f.Name]; dup {
			t.Fatalf("%q: feature %q twice in the decoded list", b, f.Name)
		}
		g.Features[f.Name] = f.Value
	}
	if len(g.Defaulted) == 0 && len(want.Defaulted) == 0 {
		g.Defaulted, want.Defaulted = nil, nil
	}
	// The decoder does not keep what the metrics ignore.
	want.EntityKeys, want.Outputs, want.TraceID = nil, nil, ""
	g.EntityKeys, g.Outputs, g.TraceID = nil, nil, ""
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", b, g, want)
	}
}

func FuzzDecoder(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	d := newDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fields the decoder skips must still be of the right type when it
		// takes the fast path; compareDecoders sees a mismatch otherwise.
		compareDecoders(t, d, b)
	})
}

func TestDecoderReusesNothingAcrossRecords(t *testing.T) {
	d := newDecoder()
	a, _, err := d.decode([]byte(`{"model":"m","features":{"a":1},"defaulted":["a"],"error":"x"}`))
	if err != nil || a.Error != "x" {
		t.Fatal(err)
	}
	b, feats, err := d.decode([]byte(`{"model":"m","features":{"b":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(feats) != 1 || feats[0] != (core.Feature{Name: "b", Value: 2}) || len(b.Defaulted) != 0 || b.Error != "" {
		t.Fatalf("state leaked between records: %+v %+v", b, feats)
	}
}
