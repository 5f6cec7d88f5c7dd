package modelservertest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/peertest"
	"github.com/tributary-ml/tributary/services/modelserver"
)

// labeledSet is predictions of one model version with their labels: pos
// positives scored 0.8, and negatives scored 0.2 (low) or 0.9 (high). With
// no ties across bins, AUC = pos·low / (pos·(low+high)) = low/(low+high).
type labeledSet struct {
	model, version string
	pos, low, high int
}

// healthData is what the metrics service aggregates for the test:
//   - fraud_lr v2: AUC 9/10 = 0.9 over 20 labels; v1: AUC 5/10 = 0.5, so a
//     tuner asking for any version would see 14/20 = 0.7 instead of 0.9.
//   - fraud_xgb v1 + v3 together: AUC (2+4)/(2+4+4) = 0.6 over 20 labels;
//     v3 alone would be 0.5, so the tuner must ask for any version.
var healthData = []labeledSet{
	{"fraud_lr", "2", 10, 9, 1},
	{"fraud_lr", "1", 10, 5, 5},
	{"fraud_xgb", "1", 2, 2, 0},
	{"fraud_xgb", "3", 8, 4, 4},
}

func produceHealth(t *testing.T, m *peertest.Metrics, sets []labeledSet) {
	t.Helper()
	ts := time.Now().Add(-time.Minute).UnixMilli()
	var preds []predlog.Prediction
	var labels []predlog.Label
	add := func(s labeledSet, i int, score, label float64) {
		id := fmt.Sprintf("%s-%s-%d", s.model, s.version, i)
		preds = append(preds, predlog.Prediction{PredictionID: id, Model: s.model, Version: s.version, Variant: "control",
			Role: predlog.RoleServed, Score: score, Outputs: map[string]float64{"score": score}, LatencyMs: 1, TimeMs: ts})
		labels = append(labels, predlog.Label{PredictionID: id, Value: label, TimeMs: ts + 1000})
	}
	for _, s := range sets {
		i := 0
		for range s.pos {
			add(s, i, 0.8, 1)
			i++
		}
		for range s.low {
			add(s, i, 0.2, 0)
			i++
		}
		for range s.high {
			add(s, i, 0.9, 0)
			i++
		}
	}
	m.Produce(t, preds, labels)
}

// waitHealth waits until the metrics service reports labeled predictions
// and AUC for model (version "" for all versions) over the last 30 minutes.
func waitHealth(t *testing.T, m *peertest.Metrics, model, version string, labeled int64, auc float64) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("metrics health of %s v%q", model, version), func() error {
		now := time.Now()
		resp, err := m.Client().GetModelHealth(context.Background(), &metricsv1.GetModelHealthRequest{Model: model, Version: version,
			StartTime: timestamppb.New(now.Add(-30 * time.Minute)), EndTime: timestamppb.New(now.Add(time.Minute))})
		if err != nil {
			return err
		}
		if tot := resp.GetTotal(); tot.GetLabeled() != labeled || !near(tot.GetAuc(), auc) {
			return fmt.Errorf("labeled %d auc %v, want %d and %v", tot.GetLabeled(), tot.GetAuc(), labeled, auc)
		}
		return nil
	})
}

// TestAdaptiveEnsembleWeightsFollowMemberQuality runs the real metrics
// service on the embedded broker, feeds it labeled predictions, and checks
// that an adaptive ensemble's weights follow the members' AUC, while an
// ensemble asking for more labels than there are keeps its configured
// weights.
func TestAdaptiveEnsembleWeightsFollowMemberQuality(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	m := peertest.StartMetrics(t, broker)
	produceHealth(t, m, healthData)
	waitHealth(t, m, "fraud_lr", "2", 20, 0.9)
	waitHealth(t, m, "fraud_lr", "", 40, 0.7)
	waitHealth(t, m, "fraud_xgb", "", 20, 0.6)
	repo := copyRepo(t, "testdata/experiments")
	// fraud_adapt needs the 20 labels each member has; fraud_adapt_few
	// asks for more and must keep its configured weights.
	for name, minLabeled := range map[string]int{"fraud_adapt": 20, "fraud_adapt_few": 21} {
		writeFile(t, filepath.Join(repo, name, "config.yaml"), fmt.Sprintf(`name: %s
format: ensemble
ensemble:
  combine: average
  adaptive: {metric: auc, floor: 0.1, min_labeled: %d, window: 30m}
  members:
    - {model: fraud_lr, version: 2, weight: 1}
    - {model: fraud_xgb, weight: 3}
`, name, minLabeled))
		writeFile(t, filepath.Join(repo, name, "1/.keep"), "")
	}
	e := startRepo(t, repo, func(c *modelserver.Config) {
		c.Common.KafkaBrokers = broker
		c.MetricsAddr = m.Addr()
		c.EnsembleRefresh = 20 * time.Millisecond
	})
	e.seedU1()
	ctx := testutil.Context(t, 20*time.Second)
	keys := map[string]string{"user_id": "u1"}
	member := func(model, variant string) float64 {
		c := ctx
		if variant != "" {
			c = metadata.AppendToOutgoingContext(ctx, "x-tributary-variant", variant)
		}
		r, err := e.serving().Predict(c, &servingv1.PredictRequest{Model: model, EntityKeys: keys, Features: amount(120)})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetOutputs()["score"]
	}
	sl, sx := member("fraud_lr", "treatment"), member("fraud_xgb", "")
	score := func(model string) (float64, error) {
		r, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: model, EntityKeys: keys, Features: amount(120)})
		return r.GetOutputs()["score"], err
	}
	// Quality over chance 0.4 (fraud_lr v2 alone) and 0.1 (fraud_xgb, all
	// versions): shares 0.1 + 0.8·(0.8, 0.2) = (0.74, 0.26). Too few labels
	// for fraud_adapt_few: its configured weights (1, 3) stay.
	adapted, static := 0.74*sl+0.26*sx, (sl+3*sx)/4
	testutil.Eventually(t, 10*time.Second, "weights moved to the better member", func() error {
		got, err := score("fraud_adapt")
		if err != nil {
			return err
		}
		if !near(got, adapted) {
			return fmt.Errorf("fraud_adapt score %v, want %v", got, adapted)
		}
		return nil
	})
	// Both ensembles are refreshed from the same metrics in one pass.
	got, err := score("fraud_adapt_few")
	if err != nil {
		t.Fatal(err)
	}
	if !near(got, static) {
		t.Errorf("fraud_adapt_few score %v with 20 of 21 labels, want the configured weights' %v", got, static)
	}
	if got := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_ensemble_weight"); !near(got, 1) {
		t.Errorf("ensemble_weight gauges sum to %v, want 1 (fraud_adapt's two weights only)", got)
	}
}
