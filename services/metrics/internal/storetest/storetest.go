// Package storetest is the conformance suite every core.RowReader adapter
// passes (the embedded store and Pinot through its stand-in broker).
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// Seed builds a reader holding rows (upserted in order: a later row with
// the same key replaces the earlier one).
type Seed func(t *testing.T, rows []core.Row) core.RowReader

type cat struct{}

func (cat) Model(model, version string) core.ModelInfo {
	if version == "v1" {
		return core.ModelInfo{Threshold: 0.5, Baseline: &core.Baseline{
			Score:    core.Bins{Edges: []float64{0, 0.5, 1}, Fractions: []float64{0.6, 0.4}},
			Features: map[string]core.Bins{"x": {Edges: []float64{0, 1, 2}, Fractions: []float64{0.5, 0.5}}},
		}}
	}
	return core.ModelInfo{Threshold: 0.5}
}

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC).UnixMilli()

// Rows builds rows of two models, two versions, two variants over five
// minutes, with labels, drift and defaults, through the aggregator.
func Rows() []core.Row {
	a := core.NewAggregator(core.AggregatorConfig{}, cat{})
	i := 0
	for _, model := range []string{"fraud", "churn"} {
		for _, version := range []string{"v1", "v2"} {
			for _, variant := range []string{"a", "b"} {
				for m := int64(0); m < 5; m++ {
					for n := 0; n < 3+int(m); n++ {
						i++
						ts := t0 + m*core.MinuteMs + int64(n)*1000
						k := core.Key{ModelKey: core.ModelKey{Model: model, Version: version, Variant: variant}, Minute: core.MinuteOf(ts)}
						id := fmt.Sprintf("p%d", i)
						p := core.Prediction{LatencyMs: float64(1 + n), Score: float64(n%10) / 10,
							Features: []core.Feature{{Name: "x", Value: float64(n % 3)}}, Failed: n == 4}
						if n%2 == 0 {
							p.Defaulted = []string{"x"}
						}
						a.AddPrediction(id, k, ts, &p, core.Source{Offset: -1})
						if n%2 == 1 {
							a.AddLabel(id, float64(n%3%2), ts, core.Source{Offset: -1})
						}
					}
				}
			}
		}
	}
	return a.Flush()
}

func keys(rows []core.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.PK()
	}
	return out
}

// Run runs the suite against the adapter seed builds.
func Run(t *testing.T, seed Seed) {
	all := Rows()
	ctx := context.Background()
	want := func(pred func(core.Row) bool) []core.Row {
		var out []core.Row
		for _, r := range all {
			if pred(r) {
				out = append(out, r)
			}
		}
		// minute, version, variant order
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && core.LessRow(out[j], out[j-1]); j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
		return out
	}

	t.Run("minutes", func(t *testing.T) {
		r := seed(t, all)
		for _, tc := range []struct {
			name string
			q    core.Query
			pred func(core.Row) bool
		}{
			{"model over all time", core.Query{Model: "fraud", FromMs: 0, ToMs: t0 * 2},
				func(r core.Row) bool { return r.Model == "fraud" }},
			{"version and variant", core.Query{Model: "fraud", Version: "v2", Variant: "b", FromMs: 0, ToMs: t0 * 2},
				func(r core.Row) bool { return r.Model == "fraud" && r.Version == "v2" && r.Variant == "b" }},
			{"range start inclusive, end exclusive", core.Query{Model: "churn", FromMs: t0 + core.MinuteMs, ToMs: t0 + 3*core.MinuteMs},
				func(r core.Row) bool {
					return r.Model == "churn" && r.Minute >= t0+core.MinuteMs && r.Minute < t0+3*core.MinuteMs
				}},
			{"unknown model", core.Query{Model: "nope", FromMs: 0, ToMs: t0 * 2}, func(core.Row) bool { return false }},
			{"empty range", core.Query{Model: "fraud", FromMs: t0 + 10*core.MinuteMs, ToMs: t0 + 20*core.MinuteMs}, func(core.Row) bool { return false }},
			{"quote in name", core.Query{Model: "fr'aud", FromMs: 0, ToMs: t0 * 2}, func(core.Row) bool { return false }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := r.Minutes(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				w := want(tc.pred)
				if !reflect.DeepEqual(keys(got), keys(w)) {
					t.Fatalf("rows %v, want %v", keys(got), keys(w))
				}
				for i := range got {
					if !reflect.DeepEqual(got[i], w[i]) {
						t.Errorf("row %s differs:\n got %+v\nwant %+v", w[i].PK(), got[i], w[i])
					}
				}
			})
		}
	})

	t.Run("limit returns one more", func(t *testing.T) {
		r := seed(t, all)
		got, err := r.Minutes(ctx, core.Query{Model: "fraud", FromMs: 0, ToMs: t0 * 2, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		w := want(func(r core.Row) bool { return r.Model == "fraud" })[:4]
		if !reflect.DeepEqual(keys(got), keys(w)) {
			t.Fatalf("rows %v, want the first 4: %v", keys(got), keys(w))
		}
	})

	t.Run("upsert keeps the latest row", func(t *testing.T) {
		first := all[0]
		later := first
		st := first.State.Clone()
		st.Requests += 10
		st.Errors += 10
		st.Latency.Add(1)
		later = core.NewRow(first.Key, st, cat{}.Model(first.Model, first.Version))
		r := seed(t, []core.Row{first, later})
		got, err := r.Minutes(ctx, core.Query{Model: first.Model, FromMs: first.Minute, ToMs: first.Minute + 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Requests != first.Requests+10 {
			t.Fatalf("got %d rows (requests %v), want one with %d requests", len(got), got, first.Requests+10)
		}
	})

	t.Run("models", func(t *testing.T) {
		r := seed(t, all)
		got, err := r.Models(ctx, t0, t0+core.MinuteMs)
		if err != nil {
			t.Fatal(err)
		}
		var w []core.ModelKey
		for _, m := range []string{"churn", "fraud"} {
			for _, v := range []string{"v1", "v2"} {
				for _, vr := range []string{"a", "b"} {
					w = append(w, core.ModelKey{Model: m, Version: v, Variant: vr})
				}
			}
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("models %v, want %v", got, w)
		}
		none, err := r.Models(ctx, t0-10*core.MinuteMs, t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(none) != 0 {
			t.Fatalf("models before any row: %v", none)
		}
	})
}
