package metrics_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
)

// labelEvent is a change event of public.labels as ingest writes it:
// Debezium envelope, bool and timestamptz (ISO-8601 in UTC) columns.
func labelEvent(t *testing.T, op string, l predlog.Label, pos cdc.Position) kafka.Message {
	t.Helper()
	row := map[string]any{
		"prediction_id": l.PredictionID, "txn_id": 1000, "user_id": "u1",
		"is_fraud":   l.Value >= 0.5,
		"labeled_at": time.UnixMilli(l.TimeMs).UTC().Format("2006-01-02T15:04:05.999999Z"),
	}
	env := cdc.Envelope{Op: op, TsMs: l.TimeMs + 100, Source: cdc.Source{
		Version: "tributary", Connector: "postgresql", Name: "tributary", TsMs: l.TimeMs + 50, Snapshot: "false",
		DB: "tributary", Schema: "public", Table: "labels", Sequence: pos.SequenceString(), LSN: int64(pos.LSN),
	}}
	switch op {
	case cdc.OpDelete:
		env.Before = row
	case cdc.OpRead:
		env.After = row
		env.Source.Snapshot, env.Source.Sequence = "true", ""
	default:
		env.After = row
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(`{"prediction_id":"` + l.PredictionID + `"}`), Value: b}
}

// TestServiceJoinsLabelsFromCDCTable: labels arrive both on `labels` and
// as change events of public.labels on cdc.public.labels; the rows count
// each label once, with the quality figures a brute-force recomputation
// gives, whatever deletes, updates, replays and garbage the CDC topic has.
func TestServiceJoinsLabelsFromCDCTable(t *testing.T) {
	brokers := testutil.Kafka(t, 2)
	repo := writeRepo(t)
	ctx := testutil.Context(t, 90*time.Second)

	preds, labels := workload(0, 600)
	var viaTopic, viaCDC []predlog.Label
	for i, l := range labels {
		if i%2 == 0 {
			viaTopic = append(viaTopic, l)
		} else {
			viaCDC = append(viaCDC, l)
		}
	}
	produce(t, ctx, brokers, preds, viaTopic)

	var msgs []kafka.Message
	pos := cdc.Position{CommitLSN: 5000, LSN: 4000}
	next := func() cdc.Position { pos.CommitLSN += 10; pos.LSN += 10; return pos }
	var replay []kafka.Message
	for i, l := range viaCDC {
		switch {
		case i < 5: // rows of the initial snapshot
			msgs = append(msgs, labelEvent(t, cdc.OpRead, l, cdc.Position{}))
		default:
			m := labelEvent(t, cdc.OpCreate, l, next())
			msgs = append(msgs, m)
			if i%10 == 0 {
				replay = append(replay, m)
			}
		}
		if i%25 == 0 { // a corrected label: the first one counts
			flipped := l
			flipped.Value = 1 - l.Value
			msgs = append(msgs, labelEvent(t, cdc.OpUpdate, flipped, next()))
		}
		if i%30 == 0 { // deleting a label does not retract it
			msgs = append(msgs, labelEvent(t, cdc.OpDelete, l, next()))
		}
	}
	// An ingest restart re-sends the events after its confirmed position.
	msgs = append(msgs, replay...)
	msgs = append(msgs, kafka.Message{Key: []byte("k"), Value: []byte(`{"op":"c","after":{"is_fraud":true}}`)})
	if err := kafka.EnsureTopics(ctx, []string{brokers}, kafka.TopicSpec{Name: "cdc.public.labels"}); err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{brokers}, Topic: "cdc.public.labels"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	svc := start(t, brokers, repo) // default --labels-cdc-topic and columns
	client := dial(t, svc.svc.GRPCAddr())
	resp := waitTotals(t, ctx, client, int64(len(preds)), int64(len(labels)))
	checkMinutes(t, resp, brute(preds, labels, 0.6))
	body := scrape(t, svc.svc.AdminAddr())
	if !regexp.MustCompile(`tributary_metrics_invalid_records_total(\{[^}]*\})? 1\b`).MatchString(body) {
		t.Errorf("the undecodable change event is not counted as invalid:\n%s", grep(body, "tributary_metrics_invalid"))
	}

	// A restart rebuilds the join from both label sources and counts nothing twice.
	svc.stop(t)
	more, moreLabels := workload(600, 60)
	produce(t, ctx, brokers, more, nil)
	p2, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{brokers}, Topic: "cdc.public.labels"})
	if err != nil {
		t.Fatal(err)
	}
	var late []kafka.Message
	for _, l := range moreLabels {
		late = append(late, labelEvent(t, cdc.OpCreate, l, next()))
	}
	if err := p2.Write(ctx, late...); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	svc2 := start(t, brokers, repo)
	all, allLabels := append(preds, more...), append(labels, moreLabels...)
	resp = waitTotals(t, ctx, dial(t, svc2.svc.GRPCAddr()), int64(len(all)), int64(len(allLabels)))
	checkMinutes(t, resp, brute(all, allLabels, 0.6))
	if t.Failed() {
		t.Log(fmt.Sprintf("%d labels via the topic, %d via CDC", len(viaTopic), len(viaCDC)))
	}
}
