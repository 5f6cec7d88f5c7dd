package core

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestSketchQuantilesWithinAccuracy(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() float64
	}{
		{"uniform 1-50ms", func() float64 { return 1 + 49*rng.Float64() }},
		{"lognormal", func() float64 { return math.Exp(rng.NormFloat64()) * 5 }},
		{"long tail", func() float64 { return 0.2 / (rng.Float64() + 1e-4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parts [4]Sketch
			var all []float64
			for i := 0; i < 20000; i++ {
				v := tc.gen()
				all = append(all, v)
				parts[i%4].Add(v)
			}
			var merged Sketch
			for i := range parts {
				merged.Merge(&parts[i])
			}
			sort.Float64s(all)
			for _, q := range []float64{0, 0.5, 0.9, 0.95, 0.99, 1} {
				want := all[int(q*float64(len(all)-1))]
				got := merged.Quantile(q)
				if math.Abs(got-want) > SketchAccuracy*want*1.0001 {
					t.Errorf("q%v: got %v, want %v within %v", q, got, want, SketchAccuracy)
				}
			}
			if merged.Count() != int64(len(all)) {
				t.Errorf("count %d, want %d", merged.Count(), len(all))
			}
		})
	}
}

func TestSketchZeroAndEmpty(t *testing.T) {
	t.Parallel()
	var s Sketch
	if s.Quantile(0.99) != 0 {
		t.Fatal("empty sketch quantile not 0")
	}
	s.Add(0)
	s.Add(math.NaN())
	s.Add(10)
	if got := s.Quantile(0.5); got != 0 {
		t.Fatalf("median of {0, NaN, 10} = %v, want 0", got)
	}
	if got := s.Quantile(1); math.Abs(got-10) > 0.1 {
		t.Fatalf("max = %v, want 10", got)
	}
	s.Add(1e300)
	if err := s.validate(); err != nil {
		t.Fatalf("huge value breaks the sketch: %v", err)
	}
}

func TestPSIAndJS(t *testing.T) {
	t.Parallel()
	exp := []float64{0.5, 0.5}
	for _, tc := range []struct {
		name    string
		counts  []int64
		psi, js float64
	}{
		{"identical", []int64{10, 10}, 0, 0},
		// (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5)
		{"shifted", []int64{8, 2}, 0.3*math.Log(1.6) + 0.3*math.Log(2.5), 0.5*0.8*math.Log2(0.8/0.65) + 0.5*0.5*math.Log2(0.5/0.65) + 0.5*0.2*math.Log2(0.2/0.35) + 0.5*0.5*math.Log2(0.5/0.35)},
		// an empty bin takes PSIEpsilon instead of infinity
		{"empty bin", []int64{10, 0}, (1-0.5)*math.Log(1/0.5) + (PSIEpsilon-0.5)*math.Log(PSIEpsilon/0.5), 0.5*1*math.Log2(1/((1+0.5)/2)) + 0.5*0.5*math.Log2(0.5/0.75) + 0.5*PSIEpsilon*math.Log2(PSIEpsilon/((PSIEpsilon+0.5)/2)) + 0.5*0.5*math.Log2(0.5/((PSIEpsilon+0.5)/2))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			psi, ok := PSI(tc.counts, exp)
			if !ok || math.Abs(psi-tc.psi) > 1e-9 {
				t.Errorf("PSI = %v %v, want %v", psi, ok, tc.psi)
			}
			js, ok := JS(tc.counts, exp)
			if !ok || math.Abs(js-tc.js) > 1e-9 {
				t.Errorf("JS = %v %v, want %v", js, ok, tc.js)
			}
			if js < 0 || js > 1 {
				t.Errorf("JS %v outside [0, 1]", js)
			}
		})
	}
	if _, ok := PSI([]int64{0, 0}, exp); ok {
		t.Error("PSI of no observations reported ok")
	}
	if _, ok := PSI([]int64{1, 2, 3}, exp); ok {
		t.Error("PSI of mismatched bins reported ok")
	}
}

func TestBinsBinAndValidate(t *testing.T) {
	t.Parallel()
	b := Bins{Edges: []float64{0, 1, 2, 3}, Fractions: []float64{0.2, 0.3, 0.5}}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	for v, want := range map[float64]int{-5: 0, 0: 0, 0.5: 0, 1: 1, 1.5: 1, 2: 2, 3: 2, 99: 2} {
		if got := b.Bin(v); got != want {
			t.Errorf("Bin(%v) = %d, want %d", v, got, want)
		}
	}
	for _, tc := range []struct {
		name string
		b    Bins
		want string
	}{
		{"edges count", Bins{Edges: []float64{0, 1}, Fractions: []float64{0.5, 0.5}}, "edges"},
		{"not increasing", Bins{Edges: []float64{0, 1, 1}, Fractions: []float64{0.5, 0.5}}, "edges"},
		{"sum", Bins{Edges: []float64{0, 1, 2}, Fractions: []float64{0.5, 0.4}}, "fractions"},
		{"negative", Bins{Edges: []float64{0, 1, 2}, Fractions: []float64{1.5, -0.5}}, "fractions[1]"},
	} {
		if err := tc.b.Validate(); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// bruteAUC compares every positive with every negative.
func bruteAUC(pos, neg []float64) float64 {
	var sum float64
	for _, p := range pos {
		for _, n := range neg {
			switch {
			case p > n:
				sum++
			case p == n:
				sum += 0.5
			}
		}
	}
	return sum / float64(len(pos)*len(neg))
}

func TestQualityAgainstBruteForce(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewState()
	var pos, neg []float64
	var tp, fp, tn, fn int
	var ll float64
	const th = 0.4
	for i := 0; i < 5000; i++ {
		// Scores at bin centres so the histogram AUC is exact.
		score := (float64(rng.IntN(ScoreBins)) + 0.5) / ScoreBins
		label := 0.0
		if rng.Float64() < score {
			label = 1
		}
		s.add(&Prediction{Score: score, LatencyMs: 1}, nil)
		s.addLabel(score, label, th)
		p := math.Min(math.Max(score, logLossEps), 1-logLossEps)
		if label == 1 {
			pos = append(pos, score)
			ll -= math.Log(p)
			if score >= th {
				tp++
			} else {
				fn++
			}
		} else {
			neg = append(neg, score)
			ll -= math.Log(1 - p)
			if score >= th {
				fp++
			} else {
				tn++
			}
		}
	}
	m := s.Derive(ModelInfo{Threshold: th})
	n := float64(len(pos) + len(neg))
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"auc", m.AUC, bruteAUC(pos, neg)},
		{"accuracy", m.Accuracy, float64(tp+tn) / n},
		{"precision", m.Precision, float64(tp) / float64(tp+fp)},
		{"recall", m.Recall, float64(tp) / float64(tp+fn)},
		{"log loss", m.LogLoss, ll / n},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Labels drawn with P(1) = score: well calibrated up to noise.
	if m.CalibrationError > 0.05 {
		t.Errorf("calibration error %v of calibrated scores, want < 0.05", m.CalibrationError)
	}
	if m.AUC < 0.7 {
		t.Errorf("auc %v of informative scores, want > 0.7", m.AUC)
	}
}

func TestCalibrationErrorOfOverconfidentModel(t *testing.T) {
	t.Parallel()
	s := NewState()
	// Scores of 0.95 with half positives: ECE ≈ 0.45 (bin centre 0.955).
	for i := 0; i < 100; i++ {
		s.add(&Prediction{Score: 0.95}, nil)
		s.addLabel(0.95, float64(i%2), 0.5)
	}
	if got := s.Derive(ModelInfo{}).CalibrationError; math.Abs(got-0.455) > 1e-9 {
		t.Fatalf("calibration error %v, want 0.455", got)
	}
}

type catalog map[string]ModelInfo

func (c catalog) Model(model, version string) ModelInfo {
	if info, ok := c[model+"/"+version]; ok {
		return info
	}
	return ModelInfo{Threshold: DefaultThreshold}
}

var testBaseline = &Baseline{
	Score:    Bins{Edges: []float64{0, 0.5, 1}, Fractions: []float64{0.7, 0.3}},
	Features: map[string]Bins{"x": {Edges: []float64{0, 5, 10}, Fractions: []float64{0.5, 0.5}}},
}

type rec struct {
	label bool
	id    string
	key   Key
	ts    int64
	p     Prediction
	value float64
	src   Source
}

// stream makes predictions over three minutes and two variants, some
// with a shadow prediction (variant "shadow", up to 3 records after the
// served one), and labels interleaved up to 60 records after their
// prediction (some before it, some twice; some between a served
// prediction and its shadow).
func stream(n int, seed uint64) []rec {
	rng := rand.New(rand.NewPCG(seed, 9))
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC).UnixMilli()
	var preds, labels []rec
	var due []int              // labels[i] goes after preds[due[i]]
	shadows := map[int][]rec{} // shadow predictions to go after preds[i]
	for i := 0; i < n; i++ {
		ts := t0 + rng.Int64N(3*MinuteMs)
		k := Key{ModelKey: ModelKey{"m", "v1", []string{"a", "b"}[rng.IntN(2)]}, Minute: MinuteOf(ts)}
		p := Prediction{LatencyMs: rng.Float64() * 20, Score: rng.Float64(),
			Features: []Feature{{"x", rng.Float64() * 12}, {"y", 1}}}
		switch rng.IntN(8) { // mostly one layout, as from one modelserver
		case 0:
			p.Features[0], p.Features[1] = p.Features[1], p.Features[0]
		case 1:
			p.Features = p.Features[1:]
		case 2:
			p.Features = nil
		}
		if rng.IntN(10) == 0 {
			p.Defaulted = []string{"y"}
		}
		if rng.IntN(20) == 0 {
			p.Failed = true
		}
		id := fmt.Sprintf("p%d", i)
		preds = append(preds, rec{id: id, key: k, ts: ts, p: p})
		if !p.Failed && rng.IntN(4) == 0 {
			sk := k
			sk.Variant = "shadow"
			sp := Prediction{Parent: id, LatencyMs: p.LatencyMs, Score: rng.Float64(), Features: p.Features, Failed: rng.IntN(10) == 0}
			at := i + rng.IntN(4)
			shadows[at] = append(shadows[at], rec{id: fmt.Sprintf("s%d", i), key: sk, ts: ts, p: sp})
		}
		if !p.Failed && rng.IntN(3) == 0 {
			copies := 1 + rng.IntN(8)/7 // one in eight labelled twice
			for c := 0; c < copies; c++ {
				labels = append(labels, rec{label: true, id: id, ts: ts + 1000, value: float64(rng.IntN(2))})
				due = append(due, i-2+rng.IntN(62))
			}
		}
	}
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return due[order[a]] < due[order[b]] })
	var out []rec
	var off [2]int64
	j := 0
	for i, p := range preds {
		for ; j < len(order) && due[order[j]] < i; j++ {
			l := labels[order[j]]
			l.src = Source{"labels", 0, off[1]}
			off[1]++
			out = append(out, l)
		}
		p.src = Source{"predictions", 0, off[0]}
		off[0]++
		out = append(out, p)
		for _, sh := range shadows[i] {
			sh.src = Source{"predictions", 0, off[0]}
			off[0]++
			out = append(out, sh)
		}
	}
	for i := len(preds); i < len(preds)+4; i++ {
		for _, sh := range shadows[i] {
			sh.src = Source{"predictions", 0, off[0]}
			off[0]++
			out = append(out, sh)
		}
	}
	for ; j < len(order); j++ {
		l := labels[order[j]]
		l.src = Source{"labels", 0, off[1]}
		off[1]++
		out = append(out, l)
	}
	return out
}

func feed(a *Aggregator, recs []rec) {
	for _, r := range recs {
		if r.label {
			a.AddLabel(r.id, r.value, r.ts, r.src)
		} else {
			p := r.p
			a.AddPrediction(r.id, r.key, r.ts, &p, r.src)
		}
	}
}

func collect(rows map[Key]Row, flushed []Row) {
	for _, r := range flushed {
		rows[r.Key] = r
	}
}

func comparable(rows map[Key]Row) map[Key]Row {
	out := map[Key]Row{}
	for k, r := range rows {
		st := r.State.Clone()
		st.Offsets = nil
		r.State = st
		out[k] = r
	}
	return out
}

// TestAggregatorMatchesBruteForce compares streaming rows with a
// recomputation from all records at once.
func TestAggregatorMatchesBruteForce(t *testing.T) {
	t.Parallel()
	recs := stream(3000, 1)
	cat := catalog{"m/v1": {Baseline: testBaseline, Threshold: 0.5}}
	a := NewAggregator(AggregatorConfig{}, cat)
	rows := map[Key]Row{}
	for i := 0; i < len(recs); i += 250 {
		feed(a, recs[i:min(i+250, len(recs))])
		collect(rows, a.Flush())
	}
	// Brute force: group by key, then fold.
	preds := map[string]rec{}
	want := map[Key]*State{}
	for _, r := range recs {
		if !r.label {
			preds[r.id] = r
			if want[r.key] == nil {
				want[r.key] = NewState()
			}
			p := r.p
			want[r.key].add(&p, testBaseline)
		}
	}
	// A label counts for its prediction and that prediction's shadows.
	labeled := map[string]bool{}
	for _, r := range recs {
		if r.label && !labeled[r.id] {
			labeled[r.id] = true
			for _, p := range preds {
				if (p.id == r.id || p.p.Parent == r.id) && !p.p.Failed {
					want[p.key].addLabel(p.p.Score, r.value, 0.5)
				}
			}
		}
	}
	shadowLabels := 0
	for k, st := range want {
		if k.Variant == "shadow" {
			shadowLabels += int(st.Labeled)
		}
	}
	if shadowLabels < 50 {
		t.Fatalf("only %d labels of shadow predictions in the workload", shadowLabels)
	}
	got := comparable(rows)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for k, st := range want {
		w := NewRow(k, st, cat.Model("m", "v1"))
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("row %s differs:\n got %+v\nwant %+v", k.PK(), got[k].Metrics, w.Metrics)
		}
	}
}

// TestAggregatorCrashAndRedelivery: rows published, offsets not committed,
// crash; the new instance restores the published rows, gets everything
// again from an earlier offset, and ends with the same rows as one that
// never stopped.
func TestAggregatorCrashAndRedelivery(t *testing.T) {
	t.Parallel()
	cat := catalog{"m/v1": {Baseline: testBaseline, Threshold: 0.5}}
	recs := stream(2000, 2)
	ref := NewAggregator(AggregatorConfig{}, cat)
	want := map[Key]Row{}
	feed(ref, recs)
	collect(want, ref.Flush())

	for _, tc := range []struct {
		name               string
		published, crashAt int // records folded into published rows; records handled at the crash
		redeliverFrom      int // first record redelivered (the committed position)
	}{
		{"crash after publish before commit", 1200, 1500, 900},
		{"crash right after commit", 1000, 1000, 1000},
		{"redeliver everything", 1700, 1900, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAggregator(AggregatorConfig{}, cat)
			topic := map[Key]Row{}
			feed(a, recs[:tc.published])
			collect(topic, a.Flush())
			feed(a, recs[tc.published:tc.crashAt]) // handled, never published
			var restored []Row
			for _, r := range topic {
				// Through the wire, as the restore reads it.
				b, err := r.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				rr, err := UnmarshalRow(b)
				if err != nil {
					t.Fatal(err)
				}
				restored = append(restored, rr)
			}
			b := NewAggregator(AggregatorConfig{}, cat)
			b.Restore(restored)
			// The join is rebuilt from what the topics hold (all records):
			// predictions remembered, then labels through the normal path.
			for _, r := range recs {
				if !r.label {
					b.Remember(r.id, r.p.Parent, r.key, r.ts, r.p.Score, r.p.Failed, r.src)
				}
			}
			for _, r := range recs {
				if r.label {
					b.AddLabel(r.id, r.value, r.ts, r.src)
				}
			}
			feed(b, recs[tc.redeliverFrom:])
			collect(topic, b.Flush())
			got := comparable(topic)
			w := comparable(want)
			for k := range w {
				if !reflect.DeepEqual(got[k].State, w[k].State) {
					t.Errorf("row %s after the crash: requests %d labeled %d, want %d %d", k.PK(), got[k].Requests, got[k].Labeled, w[k].Requests, w[k].Labeled)
				}
				if !reflect.DeepEqual(got[k].Metrics, w[k].Metrics) {
					t.Errorf("row %s after the crash: figures %+v, want %+v", k.PK(), got[k].Metrics, w[k].Metrics)
				}
			}
			if b.Stats().Duplicates == 0 && tc.redeliverFrom < tc.published {
				t.Error("no duplicates recognised")
			}
		})
	}
}

func TestAggregatorLabelTTLAndLateRecords(t *testing.T) {
	t.Parallel()
	a := NewAggregator(AggregatorConfig{LabelTTL: 2 * time.Minute, MaxPending: 100}, catalog{})
	t0 := int64(600 * MinuteMs)
	k := Key{ModelKey{"m", "v", "a"}, MinuteOf(t0)}
	a.AddPrediction("old", k, t0, &Prediction{Score: 0.9}, Source{Offset: -1})
	a.AddLabel("orphan", 1, t0, Source{Offset: -1})
	// Ten minutes later: the prediction and the orphan label expired.
	later := t0 + 10*MinuteMs
	k2 := Key{ModelKey{"m", "v", "a"}, MinuteOf(later)}
	a.AddPrediction("new", k2, later, &Prediction{Score: 0.1}, Source{Offset: -1})
	a.Flush()
	a.AddLabel("old", 1, later, Source{Offset: -1})
	a.AddLabel("new", 0, later, Source{Offset: -1})
	a.AddLabel("new", 1, later, Source{Offset: -1})
	a.AddPrediction("late", k, t0, &Prediction{}, Source{Offset: -1})
	rows := a.Flush()
	if len(rows) != 1 || rows[0].Key != k2 || rows[0].Labeled != 1 || rows[0].Accuracy != 1 {
		t.Fatalf("rows %+v, want only %s with one correct label", rows, k2.PK())
	}
	st := a.Stats()
	if st.ExpiredLabels != 1 || st.DuplicateLabels != 1 || st.LatePredictions != 1 || st.Rows != 1 {
		t.Fatalf("stats %+v, want 1 expired, 1 duplicate, 1 late prediction, 1 row in memory", st)
	}
	// The pending bound holds.
	for i := 0; i < 500; i++ {
		a.AddLabel(fmt.Sprintf("l%d", i), 1, later, Source{Offset: -1})
	}
	if p := a.Stats().Pending; p > 100 {
		t.Fatalf("%d pending, bound 100", p)
	}
}

func TestRowWireRoundTrip(t *testing.T) {
	t.Parallel()
	a := NewAggregator(AggregatorConfig{}, catalog{"m/v1": {Baseline: testBaseline, Threshold: 0.5}})
	feed(a, stream(300, 5))
	for _, r := range a.Flush() {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var cols map[string]any
		if err := json.Unmarshal(b, &cols); err != nil {
			t.Fatal(err)
		}
		if len(cols) != len(Columns()) {
			t.Errorf("row has %d columns, Columns lists %d", len(cols), len(Columns()))
		}
		for _, c := range Columns() {
			if _, ok := cols[c]; !ok {
				t.Errorf("row lacks column %s", c)
			}
		}
		if cols["pk"] != r.PK() {
			t.Errorf("pk %v, want %s", cols["pk"], r.PK())
		}
		got, err := UnmarshalRow(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %s differs:\n got %+v\nwant %+v", r.PK(), got, r)
		}
	}
}

func TestUnmarshalRowRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `{`, "decode"},
		{"no model", `{"minute":0}`, "model"},
		{"unaligned minute", `{"model":"m","minute":61}`, "minute"},
		{"pk mismatch", `{"model":"m","version":"v","variant":"a","minute":0,"pk":"x"}`, "pk"},
		{"histogram", `{"model":"m","minute":0,"score_histogram":"[1,2]"}`, "score_histogram"},
		{"bad state", `{"model":"m","minute":0,"state":"{\"requests\":1}"}`, "state"},
	} {
		if _, err := UnmarshalRow([]byte(tc.in)); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}

func FuzzUnmarshalRow(f *testing.F) {
	a := NewAggregator(AggregatorConfig{}, catalog{"m/v1": {Baseline: testBaseline, Threshold: 0.5}})
	feed(a, stream(50, 7))
	for _, r := range a.Flush() {
		b, _ := r.Marshal()
		f.Add(b)
	}
	f.Add([]byte(`{"model":"m","minute":0,"state":"{\"scores\":[]}"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalRow(b)
		if err != nil {
			return
		}
		// A row that decodes re-encodes, and its state merges and derives without panicking.
		if _, err := r.Marshal(); err != nil {
			t.Fatal(err)
		}
		if r.State != nil {
			s := NewState()
			s.Merge(r.State)
			s.Derive(ModelInfo{Baseline: testBaseline})
			r.State.Derive(ModelInfo{Baseline: testBaseline})
		}
	})
}

func TestMinuteOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]int64{0: 0, 59_999: 0, 60_000: 60_000, -1: -60_000, 125_000: 120_000} {
		if got := MinuteOf(in); got != want {
			t.Errorf("MinuteOf(%d) = %d, want %d", in, got, want)
		}
	}
}

// TestLabelWaitingAcrossPublishAndCrash: a label arrives before its
// prediction, rows are published (without it: its prediction is unknown),
// the instance dies; the label's offset is below what the row records, yet
// it must be counted once its prediction arrives — exactly once.
func TestLabelWaitingAcrossPublishAndCrash(t *testing.T) {
	t.Parallel()
	t0 := int64(1000 * MinuteMs)
	k := Key{ModelKey{"m", "v", "a"}, t0}
	other := func(a *Aggregator, i int64) {
		a.AddPrediction(fmt.Sprintf("o%d", i), k, t0+i, &Prediction{Score: 0.2}, Source{"predictions", 0, i})
	}
	a := NewAggregator(AggregatorConfig{}, catalog{})
	other(a, 0)
	a.AddLabel("p", 1, t0, Source{"labels", 0, 0}) // waits for p
	published := a.Flush()
	if published[0].Labeled != 0 {
		t.Fatal("label counted before its prediction")
	}
	// Crash. Restart from the published rows; nothing of labels committed
	// beyond offset 0 is assumed, so the label is redelivered.
	b := NewAggregator(AggregatorConfig{}, catalog{})
	b.Restore(published)
	b.AddLabel("p", 1, t0, Source{"labels", 0, 0})
	b.AddPrediction("p", k, t0+5, &Prediction{Score: 0.9}, Source{"predictions", 0, 1})
	rows := b.Flush()
	if len(rows) != 1 || rows[0].Labeled != 1 || rows[0].Requests != 2 {
		t.Fatalf("after restart: %+v, want 2 requests and 1 label", rows)
	}
	// And again: a second crash right after that publish, everything redelivered.
	c := NewAggregator(AggregatorConfig{}, catalog{})
	c.Restore(rows)
	c.Remember("p", "", k, t0+5, 0.9, false, Source{"predictions", 0, 1})
	c.AddLabel("p", 1, t0, Source{"labels", 0, 0})
	other(c, 0)
	c.AddPrediction("p", k, t0+5, &Prediction{Score: 0.9}, Source{"predictions", 0, 1})
	if again := c.Flush(); len(again) != 0 && (again[0].Labeled != 1 || again[0].Requests != 2) {
		t.Fatalf("after the second restart: %+v, want unchanged", again)
	}
}

// TestScoreMeanExactInAnyOrder: the score mean has the same bits whatever
// order predictions arrive in (partitions interleave differently after a
// restart) and across a publish, restore and resume, where a float sum
// would differ in its last bits.
func TestScoreMeanExactInAnyOrder(t *testing.T) {
	t.Parallel()
	k := Key{ModelKey: ModelKey{Model: "m", Version: "v1", Variant: "a"}}
	scores := make([]float64, 5000)
	for i := range scores {
		scores[i] = float64((i*7919)%10007) / 10007 // irregular values in [0, 1)
	}
	// The premise: float sums of these scores depend on the order.
	fwd, rev := 0.0, 0.0
	for i := range scores {
		fwd += scores[i]
		rev += scores[len(scores)-1-i]
	}
	if fwd == rev {
		t.Fatal("test premise: float sums in two orders should differ")
	}
	mean := func(order []int, restartAt int) Row {
		a := NewAggregator(AggregatorConfig{}, catalog{})
		for n, i := range order {
			if n == restartAt {
				rows := a.Flush()
				b, err := rows[0].Marshal()
				if err != nil {
					t.Fatal(err)
				}
				r, err := UnmarshalRow(b)
				if err != nil {
					t.Fatal(err)
				}
				a = NewAggregator(AggregatorConfig{}, catalog{})
				a.Restore([]Row{r})
			}
			a.AddPrediction(fmt.Sprint(i), k, int64(i), &Prediction{Score: scores[i]}, Source{Offset: -1})
		}
		return a.Flush()[0]
	}
	forward, reverse := make([]int, len(scores)), make([]int, len(scores))
	for i := range scores {
		forward[i], reverse[i] = i, len(scores)-1-i
	}
	want := mean(forward, -1)
	for _, tc := range []struct {
		name      string
		order     []int
		restartAt int
	}{
		{"reverse order", reverse, -1},
		{"restart halfway", forward, 2500},
		{"reverse with a restart", reverse, 1234},
	} {
		if got := mean(tc.order, tc.restartAt); got.ScoreMean != want.ScoreMean {
			t.Errorf("%s: score mean %v, want %v bit for bit", tc.name, got.ScoreMean, want.ScoreMean)
		}
	}
	if math.Abs(want.ScoreMean-fwd/float64(len(scores))) > 1e-9 {
		t.Errorf("score mean %v, want %v", want.ScoreMean, fwd/float64(len(scores)))
	}
}

func TestLegacyScoreSumIsUpgraded(t *testing.T) {
	r := Row{Key: Key{ModelKey: ModelKey{Model: "m"}}, State: NewState()}
	r.State.Requests, r.State.Scored = 4, 4
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// A row as the service wrote it before score_sum_nanos.
	old := strings.Replace(string(b), `\"score_sum_nanos\":0`, `\"score_sum\":1.5`, 1)
	if old == string(b) {
		t.Fatalf("no score_sum_nanos in %s", b)
	}
	got, err := UnmarshalRow([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if got.State.ScoreSumNanos != 1_500_000_000 || got.State.LegacyScoreSum != 0 || got.State.Derive(ModelInfo{}).ScoreMean != 0.375 {
		t.Fatalf("upgraded state %+v", got.State)
	}
}
