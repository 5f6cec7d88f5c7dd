package modelservertest_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/libs/testutil"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/peertest"
	"github.com/tributary-ml/tributary/services/modelserver"
)

func TestPredictBatchSplitsRowsLikePredict(t *testing.T) {
	e := startRepo(t, "testdata/experiments", nil)
	ctx := testutil.Context(t, 20*time.Second)
	var rows []*servingv1.PredictBatchRequest_Row
	for i := range 60 {
		rows = append(rows, &servingv1.PredictBatchRequest_Row{EntityKeys: map[string]string{"user_id": fmt.Sprint("user-", i)}, Features: amount(float64(i))})
	}
	batch, err := e.serving().PredictBatch(ctx, &servingv1.PredictBatchRequest{Model: "fraud_lr", Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.peer.Calls(t); got != 1 {
		t.Errorf("PredictBatch made %d feature fetches, want 1", got)
	}
	seen := map[string]int{}
	for i, p := range batch.GetPredictions() {
		one, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: rows[i].GetEntityKeys(), Features: rows[i].GetFeatures()})
		if err != nil {
			t.Fatal(err)
		}
		if p.GetVariant() != one.GetVariant() || p.GetVersion() != one.GetVersion() || !near(p.GetOutputs()["score"], one.GetOutputs()["score"]) {
			t.Errorf("row %d: batch %s/%s %v, alone %s/%s %v", i, p.GetVariant(), p.GetVersion(), p.GetOutputs()["score"], one.GetVariant(), one.GetVersion(), one.GetOutputs()["score"])
		}
		seen[p.GetVariant()]++
	}
	if len(seen) != 2 {
		t.Errorf("60 users landed on variants %v, want both", seen)
	}
}

func TestShutdownFlushesThePredictionLog(t *testing.T) {
	broker := testutil.Kafka(t, 2)
	cfg := modelserver.DefaultConfig()
	cfg.Common.AdminAddr, cfg.Common.GRPCAddr, cfg.Common.LogLevel, cfg.Common.KafkaBrokers = "127.0.0.1:0", "127.0.0.1:0", "warn", broker
	peer := peertest.StartFeatures(t, peertest.FeaturesOptions{Brokers: broker})
	cfg.Models, cfg.FeatureserverAddr, cfg.ModelsPollInterval = copyRepo(t, "testdata/models"), peer.Addr(), 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := modelserver.New(ctx, cfg, modelserver.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	conn := dialService(t, svc.GRPCAddr())
	client := servingv1.NewPredictionServiceClient(conn)
	const n = 300
	ids := map[string]bool{}
	rctx := testutil.Context(t, 20*time.Second)
	testutil.Eventually(t, 10*time.Second, "service serving", func() error {
		_, err := client.Predict(rctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "warm"}})
		return err
	})
	for i := range n {
		resp, err := client.Predict(rctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": fmt.Sprint("u", i)}})
		if err != nil {
			t.Fatal(err)
		}
		ids[resp.GetPredictionId()] = true
	}
	cancel() // stop at once: queued records must still reach Kafka
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	recs, _ := readPredictions(t, broker, n+1)
	for _, r := range recs {
		delete(ids, r.PredictionID)
	}
	if len(ids) != 0 {
		t.Errorf("%d predictions missing from the log after shutdown", len(ids))
	}
}

func TestPredictionLogResumesWhenKafkaReturns(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	_ = lis.Close()
	b, err := kafkabroker.Start(kafkabroker.Config{Port: port, Partitions: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *modelserver.Config) { c.Common.KafkaBrokers = b.Addr(); c.PredictionLogBuffer = 50 })
	ctx := testutil.Context(t, 60*time.Second)
	predict := func(user string) string {
		resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": user}})
		if err != nil {
			t.Fatalf("predict with Kafka %s: %v", user, err)
		}
		return resp.GetPredictionId()
	}
	predict("before")
	readPredictions(t, b.Addr(), 1)

	b.Close() // Kafka goes away; predictions are still served
	for i := range 100 {
		predict(fmt.Sprint("down-", i))
	}
	testutil.Eventually(t, 30*time.Second, "drops counted while Kafka is down", func() error {
		if got := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_prediction_log_dropped_total"); got < 50 {
			return fmt.Errorf("dropped %v", got)
		}
		return nil
	})

	b2, err := kafkabroker.Start(kafkabroker.Config{Port: port, Partitions: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b2.Close)
	// Once Kafka is back, new predictions reach the log again.
	testutil.Eventually(t, 30*time.Second, "a prediction logged after Kafka returned", func() error {
		predict("after")
		written := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_prediction_log_written_total")
		if written < 2 {
			return fmt.Errorf("written_total %v", written)
		}
		return nil
	})
}

func dialService(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestShutdownLogsRequestsStillInFlight stops the service while a request
// waits for its features: the request completes and its record is written
// before the prediction log closes.
func TestShutdownLogsRequestsStillInFlight(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	peer := peertest.StartFeatures(t, peertest.FeaturesOptions{Brokers: broker})
	peer.Link().Hold() // fraud_xgb waits up to 2s for features
	cfg := modelserver.DefaultConfig()
	cfg.Common.AdminAddr, cfg.Common.GRPCAddr, cfg.Common.LogLevel, cfg.Common.KafkaBrokers = "127.0.0.1:0", "127.0.0.1:0", "warn", broker
	cfg.Models, cfg.FeatureserverAddr, cfg.ModelsPollInterval = copyRepo(t, "testdata/experiments"), peer.Addr(), 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := modelserver.New(ctx, cfg, modelserver.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	client := servingv1.NewPredictionServiceClient(dialService(t, svc.GRPCAddr()))
	rctx := testutil.Context(t, 20*time.Second)
	type answer struct {
		id  string
		err error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := client.Predict(rctx, &servingv1.PredictRequest{Model: "fraud_xgb", EntityKeys: map[string]string{"user_id": "u1"}})
		got <- answer{resp.GetPredictionId(), err}
	}()
	peer.Link().WaitHeld(t, 10*time.Second)
	cancel()
	// The features arrive while the service shuts down.
	peer.Link().Release()
	a := <-got
	if a.err != nil {
		t.Fatalf("in-flight request during shutdown: %v", a.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	recs, _ := readPredictions(t, broker, 1)
	if recs[0].PredictionID != a.id {
		t.Errorf("logged %s, want the in-flight prediction %s", recs[0].PredictionID, a.id)
	}
}
