package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/metrics/internal/pinottest"
)

var base = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// writeRepo writes a model repository with a baseline for fraud/v1.
func writeRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	v1 := filepath.Join(dir, "fraud", "v1")
	if err := os.MkdirAll(v1, 0o755); err != nil {
		t.Fatal(err)
	}
	baseline := `{"score": {"edges": [0, 0.25, 0.5, 0.75, 1], "fractions": [0.4, 0.3, 0.2, 0.1]},
		"features": {"amount": {"edges": [0, 10, 100, 1000], "fractions": [0.5, 0.3, 0.2]}}}`
	if err := os.WriteFile(filepath.Join(v1, "baseline.json"), []byte(baseline), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v1, "config.yaml"), []byte("name: fraud\nformat: logistic\ninputs:\n  - {name: amount, source: request}\nthreshold: 0.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type running struct {
	svc    *metrics.Service
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, brokers, repo string, edits ...func(*metrics.Config)) *running {
	t.Helper()
	cfg := metrics.DefaultConfig()
	cfg.Common.KafkaBrokers = brokers
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.GRPCAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "error"
	cfg.Models = repo
	cfg.FlushInterval = 100 * time.Millisecond
	for _, e := range edits {
		e(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := metrics.New(ctx, cfg, metrics.Deps{Now: func() time.Time { return base.Add(30 * time.Minute) }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("service run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("service did not stop within 30s")
	}
}

func dial(t *testing.T, addr string) metricsv1.MetricsServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return metricsv1.NewMetricsServiceClient(conn)
}

// workload makes n predictions of fraud/v1 in two variants over two
// minutes from offset i0, with errors, defaults and labels for some.
func workload(i0, n int) ([]predlog.Prediction, []predlog.Label) {
	var preds []predlog.Prediction
	var labels []predlog.Label
	for i := i0; i < i0+n; i++ {
		p := predlog.Prediction{
			PredictionID: fmt.Sprintf("p%d", i),
			Model:        "fraud", Version: "v1", Variant: []string{"a", "b"}[i%2], Role: predlog.RoleServed,
			Features:  map[string]float64{"amount": float64(i%50) * 7, "age": float64(i % 9)},
			Score:     float64(i%97) / 97,
			LatencyMs: 1 + float64(i%40)/4,
			TimeMs:    base.Add(time.Duration(i%120) * time.Second).UnixMilli(),
		}
		if i%7 == 0 {
			p.Defaulted = []string{"age"}
		}
		if i%13 == 0 {
			p.Error = "feature fetch timed out"
			p.Score = 0
		}
		preds = append(preds, p)
		if i%3 == 0 && p.Error == "" {
			labels = append(labels, predlog.Label{PredictionID: p.PredictionID, Value: float64((i / 6) % 2), TimeMs: p.TimeMs + 5000})
		}
	}
	return preds, labels
}

func produce(t *testing.T, ctx context.Context, brokers string, preds []predlog.Prediction, labels []predlog.Label) {
	t.Helper()
	for topic, recs := range map[string][]any{predlog.PredictionsTopic: anys(preds), predlog.LabelsTopic: anys(labels)} {
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
			msgs[i] = kafka.Message{Value: b}
		}
		if err := p.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func anys[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// expected is a brute-force recomputation of one variant's minute.
type expected struct {
	requests, errors, labeled, correct int64
	tp, fp, fn                         int64
	logLoss                            float64
	scoreSum                           float64
	latencies                          []float64
	hist                               [10]int64
	defaulted                          map[string]int64
	scored                             int64
}

func brute(preds []predlog.Prediction, labels []predlog.Label, threshold float64) map[string]*expected {
	byID := map[string]predlog.Prediction{}
	out := map[string]*expected{}
	key := func(p predlog.Prediction) string {
		return fmt.Sprintf("%s|%d", p.Variant, time.UnixMilli(p.TimeMs).Truncate(time.Minute).UnixMilli())
	}
	for _, p := range preds {
		byID[p.PredictionID] = p
		e := out[key(p)]
		if e == nil {
			e = &expected{defaulted: map[string]int64{}}
			out[key(p)] = e
		}
		e.requests++
		e.latencies = append(e.latencies, p.LatencyMs)
		if p.Error != "" {
			e.errors++
			continue
		}
		e.scored++
		e.scoreSum += p.Score
		e.hist[min(int(p.Score*10), 9)]++
		for f := range p.Features {
			e.defaulted[f] += 0
		}
		for _, f := range p.Defaulted {
			e.defaulted[f]++
		}
	}
	for _, l := range labels {
		p := byID[l.PredictionID]
		e := out[key(p)]
		e.labeled++
		predicted, actual := p.Score >= threshold, l.Value >= 0.5
		if predicted == actual {
			e.correct++
		}
		switch {
		case predicted && actual:
			e.tp++
		case predicted:
			e.fp++
		case actual:
			e.fn++
		}
		q := math.Min(math.Max(p.Score, 1e-15), 1-1e-15)
		if actual {
			e.logLoss -= math.Log(q)
		} else {
			e.logLoss -= math.Log(1 - q)
		}
	}
	return out
}

func quantile(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[int(q*float64(len(s)-1))]
}

func checkMinutes(t *testing.T, resp *metricsv1.GetModelHealthResponse, want map[string]*expected) {
	t.Helper()
	if len(resp.Minutes) != len(want) {
		t.Fatalf("got %d minute rows, want %d", len(resp.Minutes), len(want))
	}
	for _, m := range resp.Minutes {
		k := fmt.Sprintf("%s|%d", m.Variant, m.Minute.AsTime().UnixMilli())
		e := want[k]
		if e == nil {
			t.Fatalf("unexpected row %s", k)
		}
		if m.Requests != e.requests || m.Errors != e.errors || m.Labeled != e.labeled {
			t.Errorf("%s: requests/errors/labeled = %d/%d/%d, want %d/%d/%d", k, m.Requests, m.Errors, m.Labeled, e.requests, e.errors, e.labeled)
		}
		if got, wantMean := m.ScoreMean, e.scoreSum/float64(e.scored); math.Abs(got-wantMean) > 1e-9 {
			t.Errorf("%s: score mean %v, want %v", k, got, wantMean)
		}
		for i, c := range e.hist {
			if m.ScoreHistogram[i] != c {
				t.Errorf("%s: histogram %v, want %v", k, m.ScoreHistogram, e.hist)
				break
			}
		}
		for f, c := range e.defaulted {
			if got, w := m.FeatureDefaultRate[f], float64(c)/float64(e.scored); math.Abs(got-w) > 1e-12 {
				t.Errorf("%s: default rate of %s = %v, want %v", k, f, got, w)
			}
		}
		for _, c := range []struct {
			name      string
			got, want float64
		}{
			{"accuracy", m.Accuracy, float64(e.correct) / float64(e.labeled)},
			{"precision", m.Precision, float64(e.tp) / float64(e.tp+e.fp)},
			{"recall", m.Recall, float64(e.tp) / float64(e.tp+e.fn)},
			{"log loss", m.LogLoss, e.logLoss / float64(e.labeled)},
		} {
			if math.Abs(c.got-c.want) > 1e-9 {
				t.Errorf("%s: %s %v, want %v", k, c.name, c.got, c.want)
			}
		}
		if m.Auc <= 0 || m.Auc >= 1 || m.ScoreJs <= 0 || m.FeatureJs["amount"] <= 0 {
			t.Errorf("%s: auc %v, score JS %v, feature JS %v: want values in (0, 1)", k, m.Auc, m.ScoreJs, m.FeatureJs)
		}
		for _, q := range []struct {
			q   float64
			got float64
		}{{0.5, m.LatencyP50Ms}, {0.95, m.LatencyP95Ms}, {0.99, m.LatencyP99Ms}} {
			if w := quantile(e.latencies, q.q); math.Abs(q.got-w) > 0.011*w {
				t.Errorf("%s: latency p%v = %v, want %v within 1%%", k, q.q*100, q.got, w)
			}
		}
		if _, ok := m.FeaturePsi["amount"]; !ok {
			t.Errorf("%s: no PSI for amount (baseline has it): %v", k, m.FeaturePsi)
		}
		if m.ScorePsi <= 0 {
			t.Errorf("%s: score PSI %v, want > 0 (uniform scores vs a skewed baseline)", k, m.ScorePsi)
		}
	}
}

// checkTotal: the merged total's quantiles come from merged sketches, so
// they are as exact as one minute's.
func checkTotal(t *testing.T, total *metricsv1.ModelMinute, preds []predlog.Prediction) {
	t.Helper()
	var lat []float64
	var errs int64
	for _, p := range preds {
		lat = append(lat, p.LatencyMs)
		if p.Error != "" {
			errs++
		}
	}
	if w := quantile(lat, 0.99); math.Abs(total.LatencyP99Ms-w) > 0.011*w {
		t.Errorf("total p99 %v, want %v within 1%%", total.LatencyP99Ms, w)
	}
	if total.Errors != errs || total.Version != "v1" || !total.Minute.AsTime().Equal(base) {
		t.Errorf("total errors %d version %q minute %v, want %d v1 %v", total.Errors, total.Version, total.Minute.AsTime(), errs, base)
	}
	if _, ok := total.FeaturePsi["amount"]; !ok {
		t.Errorf("total has no drift for amount though all rows are of v1: %v", total.FeaturePsi)
	}
}

func health(ctx context.Context, c metricsv1.MetricsServiceClient) (*metricsv1.GetModelHealthResponse, error) {
	return c.GetModelHealth(ctx, &metricsv1.GetModelHealthRequest{
		Model: "fraud", StartTime: timestamppb.New(base), EndTime: timestamppb.New(base.Add(time.Hour)),
	})
}

func waitTotals(t *testing.T, ctx context.Context, c metricsv1.MetricsServiceClient, requests, labeled int64) *metricsv1.GetModelHealthResponse {
	t.Helper()
	var resp *metricsv1.GetModelHealthResponse
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d requests and %d labels aggregated", requests, labeled), func() error {
		var err error
		resp, err = health(ctx, c)
		if err != nil {
			return err
		}
		if got := resp.GetTotal(); got.GetRequests() != requests || got.GetLabeled() != labeled {
			return fmt.Errorf("total requests %d labeled %d", got.GetRequests(), got.GetLabeled())
		}
		return nil
	})
	return resp
}

func TestServiceAggregatesRestartsAndAnswers(t *testing.T) {
	brokers := testutil.Kafka(t, 2)
	repo := writeRepo(t)
	ctx := testutil.Context(t, 90*time.Second)

	var hooks atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a struct{ Kind, Model string }
		if err := json.NewDecoder(r.Body).Decode(&a); err == nil && a.Kind == "latency_p99" && a.Model == "fraud" {
			hooks.Add(1)
		}
	}))
	defer hook.Close()

	preds, labels := workload(0, 600)
	produce(t, ctx, brokers, preds, labels)
	svc := start(t, brokers, repo, func(c *metrics.Config) {
		c.AlertP99Ms = "fraud=5"
		c.AlertWebhook = hook.URL
	})
	client := dial(t, svc.svc.GRPCAddr())
	resp := waitTotals(t, ctx, client, int64(len(preds)), int64(len(labels)))
	checkMinutes(t, resp, brute(preds, labels, 0.6))
	checkTotal(t, resp.Total, preds)

	// p99 is ~10ms against a 5ms threshold: one alert per variant and minute.
	testutil.Eventually(t, 10*time.Second, "4 latency alerts on the webhook", func() error {
		if n := hooks.Load(); n != 4 {
			return fmt.Errorf("%d latency alerts posted", n)
		}
		return nil
	})
	body := scrape(t, svc.svc.AdminAddr())
	for _, want := range []string{
		`tributary_metrics_predictions_total`, `tributary_metrics_labels_total`,
		`tributary_metrics_alerts_total{kind="latency_p99",model="fraud"`, `tributary_metrics_rows_published_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(body, "tributary_metrics"))
		}
	}
	if !regexp.MustCompile(`tributary_metrics_predictions_total(\{[^}]*\})? 600\b`).MatchString(body) {
		t.Errorf("/metrics does not count 600 predictions:\n%s", grep(body, "tributary_metrics_predictions"))
	}

	list, err := client.ListModels(ctx, &metricsv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Models) != 2 || list.Models[0].Variant != "a" || list.Models[1].Variant != "b" {
		t.Errorf("ListModels over the default (last hour by the injected clock) = %v, want fraud/v1 a and b", list.Models)
	}

	// Restart: the second instance restores the rows and adds to them
	// without counting anything twice, and without alerting again for the
	// minutes whose alerts the first instance raised.
	svc.stop(t)
	more, moreLabels := workload(600, 300)
	produce(t, ctx, brokers, more, moreLabels)
	svc2 := start(t, brokers, repo, func(c *metrics.Config) {
		c.AlertP99Ms = "fraud=5"
		c.AlertWebhook = hook.URL
	})
	client2 := dial(t, svc2.svc.GRPCAddr())
	all, allLabels := append(preds, more...), append(labels, moreLabels...)
	resp = waitTotals(t, ctx, client2, int64(len(all)), int64(len(allLabels)))
	checkMinutes(t, resp, brute(all, allLabels, 0.6))
	// A new variant's slow minute: the restarted alerter does alert.
	var slow []predlog.Prediction
	for i := 0; i < 20; i++ {
		slow = append(slow, predlog.Prediction{PredictionID: fmt.Sprintf("slow%d", i), Model: "fraud", Version: "v1", Variant: "c",
			Score: 0.5, LatencyMs: 40, TimeMs: base.Add(3 * time.Minute).UnixMilli()})
	}
	produce(t, ctx, brokers, slow, nil)
	waitTotals(t, ctx, client2, int64(len(all)+len(slow)), int64(len(allLabels)))
	svc2.stop(t) // sends the queued webhooks before it returns
	if n := hooks.Load(); n != 5 {
		t.Errorf("%d latency alerts posted over both runs, want 4 before the restart and 1 (variant c) after", n)
	}
}

func TestGetModelHealthErrors(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	svc := start(t, brokers, "")
	client := dial(t, svc.svc.GRPCAddr())
	ctx := testutil.Context(t, 30*time.Second)
	for _, tc := range []struct {
		name string
		req  *metricsv1.GetModelHealthRequest
		code codes.Code
		msg  string
	}{
		{"no model", &metricsv1.GetModelHealthRequest{}, codes.InvalidArgument, "model"},
		{"reversed range", &metricsv1.GetModelHealthRequest{Model: "m", StartTime: timestamppb.New(base), EndTime: timestamppb.New(base.Add(-time.Minute))}, codes.InvalidArgument, "start_time"},
		{"bad timestamp", &metricsv1.GetModelHealthRequest{Model: "m", EndTime: &timestamppb.Timestamp{Nanos: -1}}, codes.InvalidArgument, "end_time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.GetModelHealth(ctx, tc.req)
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !containsFold(st.Message(), tc.msg) {
				t.Fatalf("got %v, want %v naming %q", err, tc.code, tc.msg)
			}
		})
	}
}

// A model neither in the repository nor with metrics is NotFound, as the
// modelserver answers for it; a model of the repository without traffic
// yet is an empty answer, and one with metrics but no longer in the
// repository (or no repository configured) is answered from its rows.
func TestGetModelHealthOfAnUnknownModelIsNotFound(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	ctx := testutil.Context(t, 60*time.Second)
	produce(t, ctx, brokers, []predlog.Prediction{{PredictionID: "o1", Model: "other", Version: "v3", Variant: "a",
		Role: predlog.RoleServed, Score: 0.5, LatencyMs: 2, TimeMs: base.Add(time.Minute).UnixMilli()}}, nil)
	for _, repo := range []string{writeRepo(t), ""} {
		t.Run(fmt.Sprintf("repository %q", repo), func(t *testing.T) {
			svc := start(t, brokers, repo)
			client := dial(t, svc.svc.GRPCAddr())
			testutil.Eventually(t, 30*time.Second, "other's prediction is answered", func() error {
				resp, err := client.GetModelHealth(ctx, &metricsv1.GetModelHealthRequest{Model: "other"})
				if err != nil {
					return err
				}
				if resp.Total.GetRequests() != 1 || len(resp.Minutes) != 1 {
					return fmt.Errorf("other: %d requests in %d minutes, want 1 in 1", resp.Total.GetRequests(), len(resp.Minutes))
				}
				return nil
			})
			_, err := client.GetModelHealth(ctx, &metricsv1.GetModelHealthRequest{Model: "nosuch"})
			if st, _ := status.FromError(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), `"nosuch"`) {
				t.Errorf("GetModelHealth(nosuch) = %v, want NotFound naming the model", err)
			}
			resp, err := client.GetModelHealth(ctx, &metricsv1.GetModelHealthRequest{Model: "fraud"})
			if repo == "" {
				if st, _ := status.FromError(err); st.Code() != codes.NotFound {
					t.Errorf("GetModelHealth(fraud) without a repository = %v, want NotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetModelHealth(fraud), in the repository without traffic: %v, want an empty answer", err)
			}
			if len(resp.Minutes) != 0 || resp.Total.GetRequests() != 0 || resp.Total.GetModel() != "fraud" {
				t.Errorf("GetModelHealth(fraud) = %v, want no rows", resp)
			}
		})
	}
}

func containsFold(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (func() bool {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
		return false
	})()
}

func TestConfigValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*metrics.Config)
		field string
	}{
		{"store", func(c *metrics.Config) { c.Store = "redis" }, "store"},
		{"pinot broker", func(c *metrics.Config) { c.Store = "pinot"; c.PinotBroker = "nope" }, "pinot-broker"},
		{"label ttl", func(c *metrics.Config) { c.LabelTTL = 0 }, "label-ttl"},
		{"flush", func(c *metrics.Config) { c.FlushInterval = -time.Second }, "flush-interval"},
		{"grpc", func(c *metrics.Config) { c.Common.GRPCAddr = "x" }, "grpc-addr"},
		{"labels cdc columns", func(c *metrics.Config) { c.LabelsCDCColumns = "outcome=is_fraud" }, "labels-cdc-columns"},
		{"labels cdc topic", func(c *metrics.Config) { c.LabelsCDCTopic = "labels" }, "labels-cdc-topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := metrics.DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !containsFold(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
	if err := metrics.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

var _ = errors.New

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestServiceWithPinotStore runs the service with store=pinot against the
// broker stand-in, which ingests metrics.model_minute from Kafka as Pinot's
// REALTIME upsert table does: predictions → rows on Kafka → "Pinot" →
// GetModelHealth through the Pinot client.
func TestServiceWithPinotStore(t *testing.T) {
	brokers := testutil.Kafka(t, 2)
	repo := writeRepo(t)
	ctx := testutil.Context(t, 90*time.Second)
	schema, err := pinottest.LoadDeployed("../../deploy/pinot/model_minute_schema.json", "../../deploy/pinot/model_minute_realtime_table.json")
	if err != nil {
		t.Fatal(err)
	}
	broker := pinottest.Start(t, schema)
	if err := kafka.EnsureTopics(ctx, []string{brokers}, kafka.TopicSpec{Name: "metrics.model_minute", Compacted: true}); err != nil {
		t.Fatal(err)
	}
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: []string{brokers}, GroupID: "pinot-standin", Topics: []string{"metrics.model_minute"}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() { consumed <- cons.Run(cctx, ingester{broker}) }()
	defer func() {
		cancel()
		if err := <-consumed; err != nil {
			t.Errorf("stand-in ingestion: %v", err)
		}
	}()

	preds, labels := workload(0, 400)
	produce(t, ctx, brokers, preds, labels)
	svc := start(t, brokers, repo, func(c *metrics.Config) {
		c.Store = metrics.StorePinot
		c.PinotBroker = broker.URL
	})
	client := dial(t, svc.svc.GRPCAddr())
	resp := waitTotals(t, ctx, client, int64(len(preds)), int64(len(labels)))
	checkMinutes(t, resp, brute(preds, labels, 0.6))
	if q := broker.Queries(); len(q) == 0 || !strings.Contains(q[len(q)-1], `FROM model_minute WHERE "model" = 'fraud'`) {
		t.Fatalf("the service did not query the broker as expected: %v", q)
	}
	// An exception in a 200 answer is Unavailable to the caller.
	broker.FailNext("ServerNotRespondingError")
	_, err = health(ctx, client)
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "ServerNotRespondingError") {
		t.Fatalf("GetModelHealth with a Pinot exception: %v, want Unavailable naming it", err)
	}
}

type ingester struct{ b *pinottest.Broker }

func (i ingester) Handle(_ context.Context, m kafka.Message) error { return i.b.Ingest(m.Value) }
func (ingester) Flush(context.Context) error                       { return nil }

// Shadow predictions are never returned, so labels carry the id of the
// served prediction; a shadow record names it as its parent_id, and the
// label counts for the shadow variant's quality too (how a challenger is
// evaluated in shadow).
func TestLabelOfAServedPredictionCountsForItsShadows(t *testing.T) {
	brokers := testutil.Kafka(t, 2)
	ctx := testutil.Context(t, 60*time.Second)
	at := base.Add(time.Minute).UnixMilli()
	var preds []predlog.Prediction
	var labels []predlog.Label
	for i, sc := range [][2]float64{{0.9, 0.2}, {0.8, 0.7}, {0.1, 0.6}} {
		id := fmt.Sprint("served-", i)
		preds = append(preds,
			predlog.Prediction{PredictionID: id, Model: "fraud", Version: "v1", Variant: "a", Role: predlog.RoleServed, Score: sc[0], LatencyMs: 1, TimeMs: at},
			predlog.Prediction{PredictionID: fmt.Sprint("shadow-", i), ParentID: id, Model: "fraud", Version: "v2", Variant: "challenger", Role: predlog.RoleShadow, Score: sc[1], LatencyMs: 1, TimeMs: at})
		if i < 2 { // the third is not labeled yet
			labels = append(labels, predlog.Label{PredictionID: id, Value: 1, TimeMs: at + 5000})
		}
	}
	produce(t, ctx, brokers, preds, labels)
	svc := start(t, brokers, writeRepo(t))
	client := dial(t, svc.svc.GRPCAddr())
	for _, c := range []struct {
		variant  string
		accuracy float64 // threshold 0.6 for v1 (the repository), 0.5 for v2
	}{{"a", 1}, {"challenger", 0.5}} {
		testutil.Eventually(t, 30*time.Second, "two labels counted for variant "+c.variant, func() error {
			resp, err := client.GetModelHealth(ctx, &metricsv1.GetModelHealthRequest{Model: "fraud", Variant: c.variant})
			if err != nil {
				return err
			}
			tot := resp.GetTotal()
			if tot.GetRequests() != 3 || tot.GetLabeled() != 2 || math.Abs(tot.GetAccuracy()-c.accuracy) > 1e-9 {
				return fmt.Errorf("requests %d, labeled %d, accuracy %v; want 3, 2, %v", tot.GetRequests(), tot.GetLabeled(), tot.GetAccuracy(), c.accuracy)
			}
			return nil
		})
	}
}
