package modelservertest_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/services/modelserver"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestHotReloadServesNewVersionAndRefusesBrokenOne(t *testing.T) {
	e := start(t, func(c *modelserver.Config) { c.ModelsPollInterval = 20 * time.Millisecond })
	ctx := testutil.Context(t, 20*time.Second)
	req := &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "nobody"}, Features: amount(10)}

	writeFile(t, filepath.Join(e.dir, "fraud_lr/3/model.json"), `{"weights": {"amount": 1}, "bias": -1}`)
	want3 := 1 / (1 + math.Exp(-(-1 + math.Log1p(10))))
	testutil.Eventually(t, 10*time.Second, "version 3 serves", func() error {
		resp, err := e.serving().Predict(ctx, req)
		if err != nil {
			return err
		}
		if resp.GetVersion() != "3" {
			return fmt.Errorf("served version %s", resp.GetVersion())
		}
		if !near(resp.GetOutputs()["score"], want3) {
			t.Fatalf("version 3 score %v, want %v", resp.GetOutputs()["score"], want3)
		}
		return nil
	})

	writeFile(t, filepath.Join(e.dir, "fraud_lr/4/model.json"), `{"weights": {"no_such_input": 1}, "bias": 0}`)
	admin := "http://" + e.svc.AdminAddr()
	testutil.Eventually(t, 10*time.Second, "the refused version 4 shows in /readyz", func() error {
		code, body := get(t, admin+"/readyz")
		if code != 200 || !strings.Contains(body, "fraud_lr serves version 3; refused:") || !strings.Contains(body, "weights.no_such_input") {
			return fmt.Errorf("readyz %d %q", code, body)
		}
		return nil
	})
	resp, err := e.serving().Predict(ctx, req)
	if err != nil || resp.GetVersion() != "3" {
		t.Fatalf("after the broken version 4: %v %v, want version 3", resp.GetVersion(), err)
	}
	if got := metricValue(t, e.svc.AdminAddr(), `tributary_modelserver_model_load_failing`); got != 1 {
		t.Errorf("model_load_failing = %v, want 1", got)
	}
	_, metrics := get(t, admin+"/metrics")
	if !strings.Contains(metrics, `tributary_modelserver_model_loads_total{model="fraud_lr",result="error",version="4"} 1`) {
		t.Errorf("no load error counted for fraud_lr/4 in\n%s", grep(metrics, "model_loads"))
	}
	if code, body := get(t, admin+"/v2/repository/index"); code != 200 || !strings.Contains(body, `"versions":["3"]`) || !strings.Contains(body, "no_such_input") {
		t.Errorf("repository index %d %s", code, body)
	}
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

func TestBrokenModelMakesServiceNotReady(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad/config.yaml"), "name: bad\nformat: logistic\ninputs: [{name: a, source: request}]\n")
	writeFile(t, filepath.Join(dir, "bad/1/model.json"), "{")
	e := start(t, nil) // provides the Kafka broker and the feature peer
	// A second service over a repository whose only model is broken stays unready and says why.
	cfg := modelserver.DefaultConfig()
	cfg.Common.AdminAddr, cfg.Common.GRPCAddr, cfg.Common.LogLevel = "127.0.0.1:0", "127.0.0.1:0", "error"
	cfg.Common.KafkaBrokers = e.kafka
	cfg.Models, cfg.FeatureserverAddr, cfg.ModelsPollInterval = dir, e.peer.Addr(), 0
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := modelserver.New(ctx, cfg, modelserver.Deps{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	testutil.Eventually(t, 10*time.Second, "/readyz names the broken model", func() error {
		code, body := get(t, "http://"+svc.AdminAddr()+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "models: bad not loaded") || strings.Contains(body, "service: not started") {
			return fmt.Errorf("readyz %d %q", code, body)
		}
		return nil
	})
}

func TestRemoteBackendForwardsOverOpenInference(t *testing.T) {
	// The remote peer: another modelserver serving a model whose inputs all come with the request.
	rdir := t.TempDir()
	writeFile(t, filepath.Join(rdir, "lr_req/config.yaml"), "name: lr_req\nformat: logistic\ninputs:\n  - {name: txn_count_10m, source: request}\n  - {name: amount, source: request}\n")
	writeFile(t, filepath.Join(rdir, "lr_req/1/model.json"), `{"weights": {"txn_count_10m": 0.5, "amount": 0.01}, "bias": -1}`)
	remotePeer := startRepo(t, rdir, nil)

	ldir := t.TempDir()
	inputs := "inputs:\n  - {name: txn_count_10m, feature: \"user_transactions:txn_count_10m\", default: 0}\n  - {name: amount, source: request, default: 0, transform: {type: clip, max: 100}}\n"
	writeFile(t, filepath.Join(ldir, "lr_grpc/config.yaml"), "name: lr_grpc\nformat: remote\nremote: {addr: \""+remotePeer.svc.GRPCAddr()+"\", model: lr_req}\n"+inputs)
	writeFile(t, filepath.Join(ldir, "lr_grpc/1/.keep"), "")
	writeFile(t, filepath.Join(ldir, "lr_rest/config.yaml"), "name: lr_rest\nformat: remote\nremote: {protocol: rest, addr: \""+remotePeer.svc.AdminAddr()+"\", model: lr_req, version: \"1\"}\n"+inputs)
	writeFile(t, filepath.Join(ldir, "lr_rest/1/.keep"), "")
	e := startRepo(t, ldir, nil)
	e.peer.Set(t, "user_transactions:txn_count_10m", 4, "user_id", "u1")
	e.peer.Sync(t)
	ctx := testutil.Context(t, 20*time.Second)
	want := 1 / (1 + math.Exp(-(-1 + 0.5*4 + 0.01*100))) // amount 250 clipped to 100 before forwarding
	for _, m := range []string{"lr_grpc", "lr_rest"} {
		resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: m, EntityKeys: map[string]string{"user_id": "u1"}, Features: amount(250)})
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if !near(resp.GetOutputs()["score"], want) {
			t.Errorf("%s: score %v, want %v", m, resp.GetOutputs()["score"], want)
		}
	}
}
