package peertest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	"github.com/tributary-ml/tributary/services/metrics"
)

// Metrics is a metrics service running in process until the test ends,
// aggregating what is produced on `predictions` and `labels`.
type Metrics struct {
	svc     *metrics.Service
	brokers string
	client  metricsv1.MetricsServiceClient
}

// StartMetrics runs the metrics service (embedded store) on brokers and
// returns once it is ready (its topics exist and its consumer runs).
func StartMetrics(t testing.TB, brokers string) *Metrics {
	t.Helper()
	cfg := metrics.DefaultConfig()
	cfg.Common.KafkaBrokers = brokers
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.GRPCAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "error"
	cfg.Models = "" // no baselines, default threshold
	cfg.LabelsCDCTopic = ""
	cfg.FlushInterval = 20 * time.Millisecond
	svc, err := metrics.New(context.Background(), cfg, metrics.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.RunService(t, "metrics service", svc)
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &Metrics{svc: svc, brokers: brokers, client: metricsv1.NewMetricsServiceClient(conn)}
}

// Addr is the metrics service's gRPC address.
func (m *Metrics) Addr() string { return m.svc.GRPCAddr() }

// Client is a MetricsService client of the running service.
func (m *Metrics) Client() metricsv1.MetricsServiceClient { return m.client }

// Produce writes predictions to `predictions` and labels to `labels`, as
// the modelserver and the label pipeline do.
func (m *Metrics) Produce(t testing.TB, preds []predlog.Prediction, labels []predlog.Label) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	write := func(topic string, msgs []kafka.Message) {
		if len(msgs) == 0 {
			return
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{m.brokers}, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := p.Close(); err != nil {
				t.Errorf("close %s producer: %v", topic, err)
			}
		}()
		if err := p.Write(ctx, msgs...); err != nil {
			t.Fatalf("produce %d records to %s: %v", len(msgs), topic, err)
		}
	}
	var pm, lm []kafka.Message
	for _, p := range preds {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		pm = append(pm, kafka.Message{Key: []byte(p.PredictionID), Value: b})
	}
	for _, l := range labels {
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		lm = append(lm, kafka.Message{Key: []byte(l.PredictionID), Value: b})
	}
	write(predlog.PredictionsTopic, pm)
	write(predlog.LabelsTopic, lm)
}
