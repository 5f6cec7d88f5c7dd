package stream

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

type capture struct{ rows map[string][]byte }

func (c *capture) Write(_ context.Context, msgs ...kafka.Message) error {
	for _, m := range msgs {
		c.rows[string(m.Key)] = m.Value
	}
	return nil
}

func produceJSON[T any](t *testing.T, ctx context.Context, brokers, topic string, recs []T, key func(T) string) {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{brokers}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: []byte(key(r)), Value: b}
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBeforeCommitRestoresSameRows: an instance publishes rows, handles
// more records, and dies before committing; the next one restores the rows
// from the topic, rebuilds the label join, gets everything after the
// committed position again, and publishes the rows an instance that never
// stopped publishes.
func TestCrashBeforeCommitRestoresSameRows(t *testing.T) {
	brokers := testutil.Kafka(t, 2)
	ctx := testutil.Context(t, 60*time.Second)
	cat := benchCatalog{core.ModelInfo{Threshold: 0.5, Baseline: benchBaseline([]string{"user_txn_amount_0h", "user_txn_amount_1h"})}}
	recs, _ := benchRecords(2000)
	var preds []predlog.Prediction
	var labels []predlog.Label
	for i, b := range recs {
		var p predlog.Prediction
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		preds = append(preds, p)
		if i%3 == 0 {
			labels = append(labels, predlog.Label{PredictionID: p.PredictionID, Value: float64(i / 3 % 2), TimeMs: p.TimeMs + 1000})
		}
	}
	produceJSON(t, ctx, brokers, predlog.PredictionsTopic, preds, func(p predlog.Prediction) string { return p.PredictionID })
	produceJSON(t, ctx, brokers, predlog.LabelsTopic, labels, func(l predlog.Label) string { return l.PredictionID })
	if err := kafka.EnsureTopics(ctx, []string{brokers}, kafka.TopicSpec{Name: core.Topic, Compacted: true}); err != nil {
		t.Fatal(err)
	}

	// The records in a consumption order: predictions and labels interleaved.
	var ps, ls []kafkago.Message
	for topic, dst := range map[string]*[]kafkago.Message{predlog.PredictionsTopic: &ps, predlog.LabelsTopic: &ls} {
		if err := scan(ctx, []string{brokers}, topic, time.Time{}, func(m kafkago.Message) { *dst = append(*dst, m) }); err != nil {
			t.Fatal(err)
		}
	}
	var order []kafkago.Message
	for i := range ps {
		order = append(order, ps[i])
		if i%3 == 2 && len(ls) > 0 && i > 700 { // labels trail their predictions by ~700
			order = append(order, ls[0])
			ls = ls[1:]
		}
	}
	order = append(order, ls...)

	// Reference: one instance, never stopped.
	ref := &capture{rows: map[string][]byte{}}
	h0 := NewHandler(core.NewAggregator(core.AggregatorConfig{}, cat), ref, nil, nil, nil)
	for _, m := range order {
		if err := h0.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := h0.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// First instance: publishes after 60% of the records, handles 20% more, dies.
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{brokers}, Topic: core.Topic})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prod.Close() }()
	h1 := NewHandler(core.NewAggregator(core.AggregatorConfig{}, cat), prod, nil, nil, nil)
	published, crash, committed := len(order)*6/10, len(order)*8/10, len(order)*4/10
	for i, m := range order[:crash] {
		if err := h1.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
		if i == published-1 {
			if err := h1.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Second instance: restore, rebuild, redelivery from the committed position.
	rows, err := Restore(ctx, []string{brokers}, core.Topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("nothing restored")
	}
	agg2 := core.NewAggregator(core.AggregatorConfig{}, cat)
	agg2.Restore(rows)
	h2 := NewHandler(agg2, prod, nil, nil, nil)
	np, nl, err := h2.Rebuild(ctx, []string{brokers}, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if np != len(preds) || nl != len(labels) {
		t.Fatalf("rebuild read %d predictions and %d labels, want %d and %d", np, nl, len(preds), len(labels))
	}
	for _, m := range order[committed:] {
		if err := h2.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := h2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if h2.Stats().Duplicates == 0 {
		t.Error("the second instance recognised no redelivered record")
	}

	got, err := Restore(ctx, []string{brokers}, core.Topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ref.rows) {
		t.Fatalf("%d rows on the topic, want %d", len(got), len(ref.rows))
	}
	for _, r := range got {
		w, err := core.UnmarshalRow(ref.rows[r.PK()])
		if err != nil {
			t.Fatalf("row %s: %v", r.PK(), err)
		}
		r.State.Offsets, w.State.Offsets = nil, nil
		if !reflect.DeepEqual(r, w) {
			t.Errorf("row %s after the crash: requests %d labeled %d, want %d %d", r.PK(), r.Requests, r.Labeled, w.Requests, w.Labeled)
			a, _ := json.Marshal(r.State)
			b, _ := json.Marshal(w.State)
			t.Logf("got  %s\nwant %s", a, b)
		}
	}
}
