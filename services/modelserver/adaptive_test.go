package modelserver_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tributary-ml/tributary/libs/testutil"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/services/modelserver"
)

// metricsPeer is a real gRPC server with the metrics service's API, answering
// model health totals the test sets.
type metricsPeer struct {
	metricsv1.UnimplementedMetricsServiceServer
	mu     sync.Mutex
	totals map[string]*metricsv1.ModelMinute // model → total
	asked  map[string]string                 // model → version asked for
}

func startMetricsPeer(t *testing.T) (*metricsPeer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &metricsPeer{totals: map[string]*metricsv1.ModelMinute{}, asked: map[string]string{}}
	g := grpc.NewServer()
	metricsv1.RegisterMetricsServiceServer(g, p)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return p, lis.Addr().String()
}

func (p *metricsPeer) set(model string, labeled int64, auc float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.totals[model] = &metricsv1.ModelMinute{Model: model, Labeled: labeled, Auc: auc}
}

func (p *metricsPeer) GetModelHealth(_ context.Context, req *metricsv1.GetModelHealthRequest) (*metricsv1.GetModelHealthResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[req.GetModel()] = req.GetVersion()
	tot, ok := p.totals[req.GetModel()]
	if !ok {
		tot = &metricsv1.ModelMinute{Model: req.GetModel()}
	}
	return &metricsv1.GetModelHealthResponse{Total: tot}, nil
}

func TestAdaptiveEnsembleWeightsFollowMemberQuality(t *testing.T) {
	peer, addr := startMetricsPeer(t)
	peer.set("fraud_lr", 1000, 0.9)
	peer.set("fraud_xgb", 1000, 0.6)
	repo := copyRepo(t, "internal/testdata/experiments")
	writeFile(t, filepath.Join(repo, "fraud_adapt/config.yaml"), `name: fraud_adapt
format: ensemble
ensemble:
  combine: average
  adaptive: {metric: auc, floor: 0.1, min_labeled: 100, window: 30m}
  members:
    - {model: fraud_lr, version: 2, weight: 1}
    - {model: fraud_xgb, weight: 3}
`)
	writeFile(t, filepath.Join(repo, "fraud_adapt/1/.keep"), "")
	e := startRepo(t, repo, func(c *modelserver.Config) {
		c.MetricsAddr = addr
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
	score := func() (float64, error) {
		r, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_adapt", EntityKeys: keys, Features: amount(120)})
		return r.GetOutputs()["score"], err
	}
	// Quality over chance 0.4 and 0.1: shares 0.1 + 0.8·(0.8, 0.2) = (0.74, 0.26).
	adapted := 0.74*sl + 0.26*sx
	testutil.Eventually(t, 10*time.Second, "weights moved to the better member", func() error {
		got, err := score()
		if err != nil {
			return err
		}
		if !near(got, adapted) {
			return fmt.Errorf("score %v, want %v", got, adapted)
		}
		return nil
	})
	peer.mu.Lock()
	if peer.asked["fraud_lr"] != "2" || peer.asked["fraud_xgb"] != "" {
		t.Errorf("health asked for versions %v, want fraud_lr 2 and fraud_xgb any", peer.asked)
	}
	peer.mu.Unlock()
	// Too few labels for a member: the configured weights (1, 3) come back.
	peer.set("fraud_xgb", 10, 0.99)
	static := (sl + 3*sx) / 4
	testutil.Eventually(t, 10*time.Second, "configured weights while labels are few", func() error {
		got, err := score()
		if err != nil {
			return err
		}
		if !near(got, static) {
			return fmt.Errorf("score %v, want %v", got, static)
		}
		return nil
	})
	if got := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_ensemble_weight"); got != 0 {
		t.Errorf("ensemble_weight gauges sum to %v with no adaptive weights in force, want none", got)
	}
}
