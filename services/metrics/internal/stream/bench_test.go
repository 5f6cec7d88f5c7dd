package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

type benchCatalog struct{ info core.ModelInfo }

func (c benchCatalog) Model(string, string) core.ModelInfo { return c.info }

func benchBaseline(features []string) *core.Baseline {
	b := &core.Baseline{
		Score:    core.Bins{Edges: []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}, Fractions: []float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}},
		Features: map[string]core.Bins{},
	}
	for _, f := range features {
		b.Features[f] = core.Bins{Edges: []float64{0, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000, 1e6}, Fractions: []float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}}
	}
	return b
}

// benchRecords are predictions of 2 variants with 10 features over 10
// minutes, as the modelserver logs them.
func benchRecords(n int) ([][]byte, []string) {
	features := make([]string, 10)
	for i := range features {
		features[i] = fmt.Sprintf("user_txn_amount_%dh", i)
	}
	out := make([][]byte, n)
	for i := range out {
		p := predlog.Prediction{
			PredictionID: fmt.Sprintf("0192f5b2-7c1e-7000-8000-%012d", i),
			Model:        "fraud", Version: "v3", Variant: []string{"champion", "challenger"}[i%2], Role: predlog.RoleServed,
			EntityKeys: map[string]string{"user_id": fmt.Sprintf("u%d", i%1000)},
			Features:   map[string]float64{},
			Score:      float64(i%1000) / 1000, LatencyMs: 0.5 + float64(i%300)/10,
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			TimeMs:  1_793_527_200_000 + int64(i)*600_000/int64(n),
		}
		for j, f := range features {
			p.Features[f] = float64((i*7+j*13)%2000) * 1.5
		}
		if i%10 == 0 {
			p.Defaulted = []string{features[i%10]}
		}
		out[i], _ = json.Marshal(p)
	}
	return out, features
}

// BenchmarkAggregate is the core fold alone: predictions/s per core
// without decoding.
func BenchmarkAggregate(b *testing.B) {
	recs, features := benchRecords(100_000)
	type input struct {
		id string
		k  core.Key
		ts int64
		p  core.Prediction
	}
	in := make([]input, len(recs))
	for i, r := range recs {
		var p predlog.Prediction
		if err := DecodePrediction(r, &p); err != nil {
			b.Fatal(err)
		}
		k, cp := Convert(&p)
		in[i] = input{p.PredictionID, k, p.TimeMs, cp}
	}
	agg := core.NewAggregator(core.AggregatorConfig{}, benchCatalog{core.ModelInfo{Threshold: 0.5, Baseline: benchBaseline(features)}})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &in[i%len(in)]
		agg.AddPrediction(r.id, r.k, r.ts, &r.p, core.Source{Offset: -1})
		if i%10_000 == 9_999 {
			agg.Flush()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "predictions/s")
}

type discard struct{}

func (discard) Write(context.Context, ...kafka.Message) error { return nil }

// BenchmarkHandle is the consumer's work per record: decode the JSON
// prediction, fold it, and publish the changed rows every 10k records
// (flush, derive and JSON-encode them for a publisher that discards: no
// Kafka round trip). Every pass over the records gets new prediction ids
// and times 10 minutes later (patched in place, untimed), so every
// prediction enters the label join and rows age out as in a live stream.
func BenchmarkHandle(b *testing.B) {
	recs, features := benchRecords(100_000)
	agg := core.NewAggregator(core.AggregatorConfig{}, benchCatalog{core.ModelInfo{Threshold: 0.5, Baseline: benchBaseline(features)}})
	h := NewHandler(agg, discard{}, nil, nil, nil)
	ctx := context.Background()
	msgs := make([]kafka.Message, len(recs))
	idAt, tsAt := make([]int, len(recs)), make([]int, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Topic: predlog.PredictionsTopic, Partition: i % 4, Offset: int64(i / 4), Value: r}
		idAt[i] = bytes.Index(r, []byte(`-7000-8000-`)) + 1
		tsAt[i] = bytes.Index(r, []byte(`"ts_ms":`)) + len(`"ts_ms":`)
		if idAt[i] == 0 || tsAt[i] < len(`"ts_ms":`) {
			b.Fatalf("record %d has no id or ts_ms to patch: %s", i, r)
		}
	}
	var ts [13]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pass := i / len(msgs)
		if i%len(msgs) == 0 && pass > 0 {
			b.StopTimer()
			for j, m := range msgs {
				copy(m.Value[idAt[j]:], fmt.Sprintf("%04x", pass%0x10000))
				t, err := strconv.ParseInt(string(m.Value[tsAt[j]:tsAt[j]+len(ts)]), 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				copy(m.Value[tsAt[j]:], strconv.AppendInt(ts[:0], t+600_000, 10))
			}
			b.StartTimer()
		}
		m := msgs[i%len(msgs)]
		m.Offset += int64(pass) * int64(len(msgs))
		if err := h.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
		if i%10_000 == 9_999 {
			if err := h.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if st := h.Stats(); st.Duplicates != 0 || st.LatePredictions != 0 || st.Invalid != 0 {
		b.Fatalf("records not counted: %+v", st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "predictions/s")
}

// BenchmarkFlush is the publish step alone: every round changes 64 rows
// (one prediction each, 10 features with baseline drift) and flushes them:
// aggregator flush, derive, JSON encoding and a publisher that discards.
func BenchmarkFlush(b *testing.B) {
	recs, features := benchRecords(64)
	agg := core.NewAggregator(core.AggregatorConfig{}, benchCatalog{core.ModelInfo{Threshold: 0.5, Baseline: benchBaseline(features)}})
	h := NewHandler(agg, discard{}, nil, nil, nil)
	ctx := context.Background()
	preds := make([]predlog.Prediction, len(recs))
	for i, r := range recs {
		if err := DecodePrediction(r, &preds[i]); err != nil {
			b.Fatal(err)
		}
		preds[i].Variant = fmt.Sprintf("variant%02d", i) // 64 rows
		preds[i].TimeMs = 1_793_527_200_000
	}
	msgs := make([][]byte, len(preds))
	for i := range preds {
		msgs[i], _ = json.Marshal(preds[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	rows := 0
	for i := 0; i < b.N; i++ {
		for j, m := range msgs {
			if err := h.Handle(ctx, kafka.Message{Topic: predlog.PredictionsTopic, Offset: int64(i*len(msgs) + j), Value: m}); err != nil {
				b.Fatal(err)
			}
		}
		if err := h.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		rows += len(msgs)
	}
	if st := h.Stats(); st.Published != int64(rows) {
		b.Fatalf("published %d rows, want %d", st.Published, rows)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
