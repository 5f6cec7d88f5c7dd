package tiles

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
)

func TestResolutionAndStart(t *testing.T) {
	cases := []struct {
		window time.Duration
		want   time.Duration
	}{
		{0, 0}, {10 * time.Minute, 5 * time.Minute}, {11*time.Hour + 59*time.Minute, 5 * time.Minute},
		{12 * time.Hour, time.Hour}, {7 * 24 * time.Hour, time.Hour}, {12 * 24 * time.Hour, 24 * time.Hour}, {30 * 24 * time.Hour, 24 * time.Hour},
	}
	for _, c := range cases {
		if got := ResolutionFor(c.window); got != c.want {
			t.Errorf("ResolutionFor(%s) = %s, want %s", c.window, got, c.want)
		}
	}
	starts := []struct{ ts, res, want int64 }{
		{0, 300_000, 0}, {299_999, 300_000, 0}, {300_000, 300_000, 300_000}, {-1, 300_000, -300_000}, {12345, 0, 0},
	}
	for _, c := range starts {
		if got := StartOf(c.ts, time.Duration(c.res)*time.Millisecond); got != c.want {
			t.Errorf("StartOf(%d, %dms) = %d, want %d", c.ts, c.res, got, c.want)
		}
	}
}

func TestRetention(t *testing.T) {
	v := &featurespec.View{Features: []featurespec.Feature{
		{Name: "a", Aggregation: "count", Window: featurespec.Duration(10 * time.Minute)},
		{Name: "b", Aggregation: "count", Window: featurespec.Duration(time.Hour)},
		{Name: "c", Aggregation: "count", Window: featurespec.Duration(7 * 24 * time.Hour)},
		{Name: "d", Column: "x", Aggregation: "latest"},
	}}
	for res, want := range map[time.Duration]time.Duration{5 * time.Minute: 65 * time.Minute, time.Hour: 7*24*time.Hour + time.Hour, 0: 0} {
		if got := Retention(v, res); got != want {
			t.Errorf("Retention(%s) = %s, want %s", res, got, want)
		}
	}
}

func TestTileRoundTripAndDecodeErrors(t *testing.T) {
	ir := &IR{}
	ir.Observe(featurespec.AggApproxDistinct, "m1", 5)
	ir.Observe(featurespec.AggP50, 3.5, 6)
	tl := &Tile{View: "v", Entity: "e|x", ResolutionMs: 300_000, StartMs: 600_000, MaxEventMs: 600_001,
		Features: map[string]*IR{"f": ir}, Offsets: map[string]int64{"t/0": 7}}
	b, err := tl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.Encode()
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the tile:\n%s\n%s", b, b2)
	}
	if got.Key() != "v|e|x|300000|600000" {
		t.Fatalf("Key() = %s", got.Key())
	}
	bad := []struct{ name, json, want string }{
		{"not json", `{`, "decode tile"},
		{"no view", `{"entity":"e"}`, "view is empty"},
		{"no entity", `{"view":"v"}`, "entity is empty"},
		{"misaligned", `{"view":"v","entity":"e","res_ms":300000,"start_ms":5}`, "not aligned"},
		{"nil feature", `{"view":"v","entity":"e","features":{"f":null}}`, "feature f has no state"},
		{"bad registers", `{"view":"v","entity":"e","features":{"f":{"n":1,"dc":{"r":"AAAA"}}}}`, "distinct registers"},
		{"unsorted sparse", `{"view":"v","entity":"e","features":{"f":{"n":1,"dc":{"s":[5,1]}}}}`, "not sorted"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Decode([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Decode(%s) = %v, want an error containing %q", c.json, err, c.want)
			}
		})
	}
}

func TestQuantilesEncodeLikeEncodingJSON(t *testing.T) {
	q := &Quantiles{}
	for _, x := range []float64{-3, -0.5, 0, 2, 2, 9, 1e6} {
		q.Add(x)
	}
	tl := &Tile{View: "v", Entity: "e", Features: map[string]*IR{"f": {Count: 7, Quantiles: q}, "g": {Quantiles: &Quantiles{}}}}
	got, err := tl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := json.Marshal(tl)
	g, _ := json.Marshal(back)
	if string(w) != string(g) {
		t.Fatalf("quantiles did not survive the hand-written encoding:\n%s\n%s\n(encoded %s)", w, g, got)
	}
}

func TestIRMergeEqualsSequentialAdds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	aggs := []string{"count", "sum", "avg", "min", "max", "stddev", "first", "last", "approx_distinct", "p50", "p99"}
	for trial := 0; trial < 200; trial++ {
		var all IR
		parts := make([]IR, 1+rng.IntN(5))
		for i := 0; i < rng.IntN(300); i++ {
			v := math.Round(rng.NormFloat64()*1e4) / 100
			ts := rng.Int64N(1e6)
			p := &parts[rng.IntN(len(parts))]
			all.Observe("approx_distinct", v, ts)
			p.Observe("approx_distinct", v, ts)
			all.Quantiles = addQ(all.Quantiles, v)
			p.Quantiles = addQ(p.Quantiles, v)
		}
		var merged IR
		for i := range parts {
			merged.Merge(&parts[i])
		}
		for _, agg := range aggs {
			w, wok := all.Value(agg)
			g, gok := merged.Value(agg)
			wf, _ := Number(w)
			gf, _ := Number(g)
			if wok != gok || math.Abs(wf-gf) > 1e-6*math.Max(1, math.Abs(wf)) {
				t.Fatalf("trial %d %s: merged %v,%v; sequential %v,%v", trial, agg, g, gok, w, wok)
			}
		}
	}
}

func addQ(q *Quantiles, x float64) *Quantiles {
	if q == nil {
		q = &Quantiles{}
	}
	q.Add(x)
	return q
}

func TestDistinctAccuracy(t *testing.T) {
	for _, n := range []int{0, 1, 100, 128, 129, 1000, 20000, 200000} {
		var d Distinct
		for i := 0; i < n; i++ {
			d.Add(fmt.Sprint("merchant-", i))
			d.Add(fmt.Sprint("merchant-", i)) // duplicates do not count
		}
		got := d.Estimate()
		tol := 0.0
		if n > SparseLimit {
			tol = 0.07 * float64(n) // 3 standard errors
		}
		if math.Abs(got-float64(n)) > tol {
			t.Errorf("distinct of %d values = %v (tolerance %v)", n, got, tol)
		}
		b, _ := json.Marshal(&d)
		var back Distinct
		if err := json.Unmarshal(b, &back); err != nil || back.Estimate() != got {
			t.Errorf("distinct of %d: JSON round trip gave %v, %v", n, back.Estimate(), err)
		}
	}
}

func TestQuantilesAccuracyAndRetract(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var q Quantiles
	var xs []float64
	for i := 0; i < 10000; i++ {
		x := math.Exp(rng.NormFloat64()*2) * float64(1-2*rng.IntN(2))
		if i%100 == 0 {
			x = 0
		}
		xs = append(xs, x)
		q.Add(x)
	}
	// Retract the first half.
	for _, x := range xs[:5000] {
		q.Retract(x)
	}
	xs = xs[5000:]
	slices.Sort(xs)
	for _, p := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 1} {
		want := xs[int(p*float64(len(xs)-1))]
		got, ok := q.Quantile(p)
		if !ok || math.Abs(got-want) > QuantileAccuracy*math.Abs(want)+1e-9 {
			t.Errorf("p%v = %v, want %v within %v relative", p*100, got, want, QuantileAccuracy)
		}
	}
	if q.Count() != 5000 {
		t.Errorf("count after retracting half = %d, want 5000", q.Count())
	}
}

func TestWindowSawtooth(t *testing.T) {
	f := featurespec.Feature{Name: "n", Aggregation: "count", Window: featurespec.Duration(10 * time.Minute)}
	mk := func(startMin int64, n int64) *Tile {
		return &Tile{View: "v", Entity: "e", ResolutionMs: 300_000, StartMs: startMin * 60_000, MaxEventMs: startMin*60_000 + 1,
			Features: map[string]*IR{"n": {Count: n}}}
	}
	ts := []*Tile{mk(0, 1), mk(5, 2), mk(10, 4), mk(15, 8), {View: "v", Entity: "e", Features: map[string]*IR{"n": {Count: 100}}}}
	cases := []struct {
		nowMin int64
		want   int64
	}{{0, 1}, {4, 1}, {12, 7}, {14, 7}, {15, 14}, {19, 14}, {20, 12}, {26, 8}, {30, 0}}
	for _, c := range cases {
		ir, _ := Window(ts, f, c.nowMin*60_000)
		if ir.Count != c.want {
			t.Errorf("count over 10m at minute %d = %d, want %d", c.nowMin, ir.Count, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"view":"v","entity":"e","res_ms":300000,"start_ms":600000,"features":{"f":{"n":2,"sum":3,"dc":{"s":[1,2]},"q":{"p":{"3":2}}}}}`))
	f.Add([]byte(`{"view":"v","entity":"e","features":{"f":{"n":1,"dc":{"r":""}}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"view":"v","entity":"e","features":{"a":{"n":1},"b":"a","c":"b","d":"zz"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tl, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must be usable by readers without panicking and
		// survive a round trip.
		for name, ir := range tl.Features {
			for _, agg := range featurespec.Aggregations() {
				ir.Value(agg)
			}
			var m IR
			m.Merge(ir)
			_ = name
		}
		out, err := tl.Encode()
		if err != nil {
			t.Fatalf("decoded tile does not encode: %v", err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-encoded tile does not decode: %v\n%s", err, out)
		}
	})
}

// FuzzAppendJSONMatchesEncodingJSON: the hand-written encoder writes the
// document encoding/json writes for the same tile.
func FuzzAppendJSONMatchesEncodingJSON(f *testing.F) {
	f.Add("v", "e<&>\u2028\xff", 3.5, 1e-7, 2e21, "p\n\"x", int64(5))
	f.Fuzz(func(t *testing.T, view, entity string, x, y, z float64, s string, n int64) {
		if math.IsNaN(x+y+z) || math.IsInf(x+y+z, 0) {
			return
		}
		tl := &Tile{View: view, Entity: entity, ResolutionMs: n, StartMs: -n, MaxEventMs: n * 2,
			Features: map[string]*IR{"b": {Count: n, Sum: x, SumSq: y, Min: z, Max: -x, First: s, FirstMs: n, FirstPos: Pos{uint64(n), 7},
				Last: x, LastMs: -n, LastPos: Pos{0, uint64(n)}}, "a": {}},
			Offsets: map[string]int64{"t/1": n, "t/0": 1}}
		got, err := tl.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(tl)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendJSON:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}

// TestAppendJSONSharedIRs: features that share one IR pointer are written
// once, later ones as the first one's name; Decode gives them one shared
// IR again, equal to what the encoding/json form (a copy per feature)
// decodes to.
func TestAppendJSONSharedIRs(t *testing.T) {
	shared := &IR{}
	shared.Add(json.Number("2.5"), 10)
	shared.Add("x", 20)
	other := &IR{}
	other.Observe(featurespec.AggP90, 7.0, 30)
	tl := &Tile{View: "v", Entity: "e", ResolutionMs: 300000, StartMs: 0, MaxEventMs: 30,
		Features: map[string]*IR{"a_sum": shared, "b_p90": other, "c_max": shared, "d_last": shared}}
	got, err := tl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"c_max":"a_sum","d_last":"a_sum"`) {
		t.Fatalf("shared IRs not written as references:\n%s", got)
	}
	full, err := json.Marshal(tl)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode(full)
	if err != nil {
		t.Fatal(err)
	}
	if a.Features["a_sum"] != a.Features["c_max"] || a.Features["a_sum"] != a.Features["d_last"] {
		t.Error("decoded references do not share the IR")
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("decoded with references:\n%s\nwithout:\n%s", ja, jb)
	}
	for _, bad := range []string{
		`{"view":"v","entity":"e","features":{"a":"b"}}`,
		`{"view":"v","entity":"e","features":{"a":"a"}}`,
		`{"view":"v","entity":"e","features":{"a":{"n":1},"b":"a","c":"b"}}`,
		`{"view":"v","entity":"e","features":{"a":null,"b":"a"}}`,
	} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s): want an error", bad)
		}
	}
}

// TestNumberPrecheckAgreesWithParseFloat: the quick rejection never turns
// away a string ParseFloat accepts as a finite number, and Number refuses
// the infinities and NaN either way.
func TestNumberPrecheckAgreesWithParseFloat(t *testing.T) {
	for _, s := range []string{"1", "-2.5e3", "+.5", "0x1p-2", "1_000", "Inf", "-infinity", "NaN", "1E9", "0X1P3",
		"m123", "p12", "2026-11-02T10:00:00Z", "2026-11-02 10:00:00+00", "", " 1", "1 ", "12:30", "u1", "true"} {
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && !mayBeNumber(s) {
			t.Errorf("mayBeNumber(%q) = false, but ParseFloat accepts it", s)
		}
		if _, ok := Number(s); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			t.Errorf("Number(%q) accepted %v", s, f)
		}
	}
	if mayBeNumber("p12") {
		t.Error(`mayBeNumber("p12") = true: a word starting like a hex exponent goes to ParseFloat`)
	}
}

func FuzzNumberPrecheck(f *testing.F) {
	f.Add("1.5")
	f.Add("m1")
	f.Add("p12")
	f.Add("-.5e3")
	f.Add("0x1p-2")
	f.Fuzz(func(t *testing.T, s string) {
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && !mayBeNumber(s) {
			t.Fatalf("mayBeNumber(%q) = false, but ParseFloat accepts it as %v", s, f)
		}
	})
}

// FuzzDistinctJSONMatchesEncodingJSON: the hand-written encoding of a
// distinct counter is what encoding/json writes for its JSON form, sparse
// or dense, and reads back to the same counter.
func FuzzDistinctJSONMatchesEncodingJSON(f *testing.F) {
	f.Add([]byte("abc"), uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("x"), uint8(200))
	f.Fuzz(func(t *testing.T, seed []byte, n uint8) {
		var d Distinct
		for i := range int(n) {
			d.Add(fmt.Sprint(string(seed), i))
		}
		j := distinctJSON{Sparse: d.Sparse}
		if d.Regs != nil {
			j.Regs = base64.StdEncoding.EncodeToString(d.Regs)
		}
		want, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("appendJSON:\n%s\nencoding/json:\n%s", got, want)
		}
		var back Distinct
		if err := back.UnmarshalJSON(got); err != nil {
			t.Fatal(err)
		}
		if back.Estimate() != d.Estimate() {
			t.Fatalf("read back estimate %v, want %v", back.Estimate(), d.Estimate())
		}
	})
}

// Events of equal event time (rows one PostgreSQL transaction wrote at one
// now()) are ordered by source position for first and last, whatever
// order they arrive or merge in; without positions the later arrival is
// the last and the earlier the first, as before positions existed.
func TestFirstAndLastBreakTiesByPosition(t *testing.T) {
	type ev struct {
		v   string
		pos Pos
	}
	evs := []ev{{"10.00", Pos{500, 410}}, {"20.00", Pos{500, 420}}, {"300.00", Pos{500, 430}}, {"7.00", Pos{400, 990}}}
	orders := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}}
	for _, order := range orders {
		var seq IR
		parts := make([]IR, 2)
		for k, i := range order {
			seq.AddValueAt(ValueOf(evs[i].v), 1000, evs[i].pos)
			parts[k%2].ObserveValueAt(featurespec.AggLast, ValueOf(evs[i].v), 1000, evs[i].pos)
		}
		var merged, mergedRev IR
		merged.Merge(&parts[0])
		merged.Merge(&parts[1])
		mergedRev.Merge(&parts[1])
		mergedRev.Merge(&parts[0])
		for name, ir := range map[string]*IR{"added": &seq, "merged": &merged, "merged in reverse": &mergedRev} {
			if v, _ := ir.Value(featurespec.AggLast); v != "300.00" || ir.LastPos != (Pos{500, 430}) {
				t.Errorf("order %v, %s: last = %v at %v, want 300.00 at [500 430]", order, name, v, ir.LastPos)
			}
			if v, _ := ir.Value(featurespec.AggFirst); v != "7.00" || ir.FirstPos != (Pos{400, 990}) {
				t.Errorf("order %v, %s: first = %v at %v, want 7.00 at [400 990]", order, name, v, ir.FirstPos)
			}
		}
		// Event time still comes first.
		seq.AddValueAt(ValueOf("late"), 999, Pos{900, 900})
		seq.AddValueAt(ValueOf("next"), 1001, Pos{1, 1})
		if v, _ := seq.Value(featurespec.AggLast); v != "next" {
			t.Errorf("last = %v, want next (a later event time beats a later position)", v)
		}
		if v, _ := seq.Value(featurespec.AggFirst); v != "late" {
			t.Errorf("first = %v, want late (an earlier event time beats an earlier position)", v)
		}
	}
	var none IR
	for _, v := range []string{"a", "b", "c"} {
		none.Add(v, 5)
	}
	if l, _ := none.Value(featurespec.AggLast); l != "c" {
		t.Errorf("without positions last = %v, want c (the later arrival)", l)
	}
	if f, _ := none.Value(featurespec.AggFirst); f != "a" {
		t.Errorf("without positions first = %v, want a (the earlier arrival)", f)
	}
}

// Positions travel in the tile JSON as first_pos/last_pos; tiles written
// before them decode with zero positions.
func TestTilePositionsRoundTripAndOldTilesDecode(t *testing.T) {
	var ir IR
	ir.AddValueAt(ValueOf("x"), 5, Pos{1 << 40, 3})
	ir.AddValueAt(ValueOf("y"), 5, Pos{1 << 40, 9})
	tl := &Tile{View: "v", Entity: "e", MaxEventMs: 5, Features: map[string]*IR{"f": &ir}}
	b, err := tl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"first":"x","first_ms":5,"first_pos":[1099511627776,3],"last":"y","last_ms":5,"last_pos":[1099511627776,9]`) {
		t.Errorf("encoded tile lacks the positions: %s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.Features["f"]; g.FirstPos != ir.FirstPos || g.LastPos != ir.LastPos {
		t.Errorf("decoded positions %v, %v; want %v, %v", g.FirstPos, g.LastPos, ir.FirstPos, ir.LastPos)
	}
	old, err := Decode([]byte(`{"view":"v","entity":"e","res_ms":0,"start_ms":0,"max_event_ms":5,"features":{"f":{"n":1,"first":"x","first_ms":5,"last":"x","last_ms":5}}}`))
	if err != nil {
		t.Fatalf("a tile without positions: %v", err)
	}
	if f := old.Features["f"]; f.LastPos != (Pos{}) || f.FirstPos != (Pos{}) || f.Last != "x" {
		t.Errorf("old tile decoded to %+v", f)
	}
}
