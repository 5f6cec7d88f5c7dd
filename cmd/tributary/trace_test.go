package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/testutil"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// TestTraceFromCommitToServableTile: a transaction committed in a real
// PostgreSQL is followed by one trace through the whole stack — ingest's
// span starting at the commit, the featurizer's spans through the
// repartition topic to the tile it writes, and the featureserver's span
// marking the tile servable — so the freshness of that change is the
// distance from the trace's start to the "tile servable" event.
func TestTraceFromCommitToServableTile(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	ctx := testutil.Context(t, 3*time.Minute)
	dbDSN, db := exampleDB(t, ctx, dsn)
	const user = "u_trace"
	if _, err := db.Exec(ctx, "INSERT INTO users (user_id, email, country, segment) VALUES ($1, 'trace@example.com', 'FR', 'consumer')", user); err != nil {
		t.Fatal(err)
	}

	exp := tracetest.NewInMemoryExporter()
	cfg := exampleStack(t, dbDSN, "trace")
	cfg.SpanExporter = exp
	st := runStack(t, ctx, cfg, dsn)
	features := featuresv1.NewFeatureServiceClient(dial(t, st.Featureserver.GRPCAddr()))
	testutil.Eventually(t, 60*time.Second, "user profile from the CDC snapshot", func() error {
		v, err := feature(ctx, features, user, "user_profile:country")
		if err != nil {
			return err
		}
		if v.GetValue().GetStringValue() != "FR" {
			return fmt.Errorf("country = %v", v)
		}
		return nil
	})

	if _, err := db.Exec(ctx, "INSERT INTO transactions (user_id, merchant_id, amount) VALUES ($1, 'm001', 12.34)", user); err != nil {
		t.Fatal(err)
	}
	tilePrefix := "user_transactions|" + user + "|"
	var servable tracetest.SpanStub
	testutil.Eventually(t, 60*time.Second, "a span marking a "+tilePrefix+"* tile servable", func() error {
		for _, s := range exp.GetSpans() {
			for _, ev := range s.Events {
				for _, a := range ev.Attributes {
					if ev.Name == "tile servable" && a.Key == "tributary.tile.key" && strings.HasPrefix(a.Value.AsString(), tilePrefix) {
						servable = s
						return nil
					}
				}
			}
		}
		return fmt.Errorf("%d spans so far, none marks the tile servable", len(exp.GetSpans()))
	})

	// Walk from the servable tile's span to the root, by parents.
	spans := exp.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	var chain []string
	s := servable
	for {
		if s.SpanContext.TraceID() != servable.SpanContext.TraceID() {
			t.Fatalf("span %s is in trace %v, not the tile's %v", s.Name, s.SpanContext.TraceID(), servable.SpanContext.TraceID())
		}
		chain = append(chain, fmt.Sprintf("%s (%s)", s.Name, s.InstrumentationScope.Name))
		if !s.Parent.IsValid() {
			break
		}
		p, ok := byID[s.Parent.SpanID()]
		if !ok {
			t.Fatalf("span %s's parent %v was not exported; chain so far %v", s.Name, s.Parent.SpanID(), chain)
		}
		s = p
	}
	root := s
	want := []string{
		"process features.tiles (tributary/featureserver)",
		"send features.tiles (tributary/featurizer)",
		"process featurizer.repartition (tributary/featurizer)",
		"send featurizer.repartition (tributary/featurizer)",
		"process cdc.public.transactions (tributary/featurizer)",
		"send cdc.public.transactions (tributary/ingest)",
	}
	if strings.Join(chain, " ← ") != strings.Join(want, " ← ") {
		t.Fatalf("trace from the servable tile to its root:\n  %s\nwant\n  %s", strings.Join(chain, " ← "), strings.Join(want, " ← "))
	}
	for _, s := range []tracetest.SpanStub{root, byID[servable.Parent.SpanID()]} {
		if s.SpanKind != trace.SpanKindProducer {
			t.Errorf("%s: kind %v, want producer", s.Name, s.SpanKind)
		}
	}
	if servable.SpanKind != trace.SpanKindConsumer {
		t.Errorf("%s: kind %v, want consumer", servable.Name, servable.SpanKind)
	}

	// The root starts at the commit: PostgreSQL's commit timestamp of the
	// transaction (microseconds) is the span's start and an attribute.
	var commitAttr string
	for _, a := range root.Attributes {
		if a.Key == "tributary.cdc.commit_time" {
			commitAttr = a.Value.AsString()
		}
	}
	commit, err := time.Parse(time.RFC3339Nano, commitAttr)
	if err != nil {
		t.Fatalf("root span's commit time attribute %q: %v", commitAttr, err)
	}
	var pgCommit time.Time
	if err := db.QueryRow(ctx, "SELECT max(created_at) FROM transactions WHERE user_id = $1", user).Scan(&pgCommit); err != nil {
		t.Fatal(err)
	}
	if !root.StartTime.Equal(commit) {
		t.Errorf("root span starts at %s, want the commit time %s", root.StartTime, commit)
	}
	// created_at defaults to now(), the transaction's start, which is
	// before its commit.
	if commit.Before(pgCommit) {
		t.Errorf("commit time %s is before the row's created_at %s", commit, pgCommit)
	}
	// Freshness is visible: the servable event comes after the commit,
	// and every span of the chain ends after its parent started.
	var at time.Time
	for _, ev := range servable.Events {
		if ev.Name == "tile servable" {
			at = ev.Time
		}
	}
	if !at.After(root.StartTime) {
		t.Errorf("tile servable at %s, not after the commit %s", at, root.StartTime)
	}
	t.Logf("commit → servable: %s along %d spans", at.Sub(root.StartTime), len(chain))
}
