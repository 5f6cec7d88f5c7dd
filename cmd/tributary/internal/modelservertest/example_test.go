package modelservertest_test

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"gopkg.in/yaml.v3"

	"github.com/tributary-ml/tributary/libs/testutil"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"
)

// TestExampleFraudModelServes serves the repository `tributary train` writes
// (examples/fraud/models) and checks the score against the artifact read
// here with plain YAML and JSON decoding.
func TestExampleFraudModelServes(t *testing.T) {
	const repo = "../../../../examples/fraud/models"
	var cfg struct {
		Inputs []struct {
			Name, Feature, Source string
			Transform             struct {
				Type      string
				Mean, Std float64
			}
		}
	}
	b, err := os.ReadFile(repo + "/fraud_lr/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(repo + "/fraud_lr")
	if err != nil {
		t.Fatal(err)
	}
	latest := ""
	for _, e := range entries {
		if e.IsDir() && (len(e.Name()) > len(latest) || (len(e.Name()) == len(latest) && e.Name() > latest)) {
			latest = e.Name()
		}
	}
	var lr struct {
		Weights map[string]float64
		Bias    float64
	}
	b, err = os.ReadFile(repo + "/fraud_lr/" + latest + "/model.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}

	e := startWithViews(t, repo, "../../../../examples/fraud/features", nil)
	raw := map[string]float64{}
	for i, in := range cfg.Inputs {
		raw[in.Name] = float64(i + 2)
		if in.Feature != "" {
			e.peer.Set(t, in.Feature, raw[in.Name], "user_id", "u7")
		}
	}
	e.peer.Sync(t)
	z := lr.Bias
	for _, in := range cfg.Inputs {
		x := raw[in.Name]
		switch in.Transform.Type {
		case "standardize":
			x = (x - in.Transform.Mean) / in.Transform.Std
		case "log1p":
			x = math.Log1p(x)
		case "":
		default:
			t.Fatalf("the example uses transform %q; extend this test", in.Transform.Type)
		}
		z += lr.Weights[in.Name] * x
	}
	want := 1 / (1 + math.Exp(-z))

	ctx := testutil.Context(t, 10*time.Second)
	resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "u7"}, Features: amount(raw["amount"])})
	if err != nil {
		t.Fatal(err)
	}
	if !near(resp.GetOutputs()["score"], want) || resp.GetVersion() != latest || len(resp.GetDefaultedFeatures()) != 0 {
		t.Errorf("example fraud_lr: score %v version %s defaulted %v; want %v, %s, none", resp.GetOutputs()["score"], resp.GetVersion(), resp.GetDefaultedFeatures(), want, latest)
	}
	if calls, reads := e.peer.Calls(t), e.peer.Link().Reads(); calls != 1 || !slices.Contains(reads, "user_clicks|u7") {
		t.Errorf("feature fetch: %d calls, store reads %v", calls, reads)
	}
}

func TestTraceContextReachesThePredictionLog(t *testing.T) {
	e := start(t, nil)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(testutil.Context(t, 10*time.Second), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "u1"}})
	if err != nil {
		t.Fatal(err)
	}
	recs, msgs := readPredictions(t, e.kafka, 1)
	if recs[0].PredictionID != resp.GetPredictionId() || recs[0].TraceID != traceID {
		t.Errorf("record %s trace %q, want %s trace %s", recs[0].PredictionID, recs[0].TraceID, resp.GetPredictionId(), traceID)
	}
	var header string
	for _, h := range msgs[0].Headers {
		if h.Key == "traceparent" {
			header = string(h.Value)
		}
	}
	if !strings.Contains(header, traceID) {
		t.Errorf("traceparent header %q does not carry trace %s", header, traceID)
	}
}
