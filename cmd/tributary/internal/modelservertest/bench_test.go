package modelservertest_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/services/modelserver"
)

// benchRate is the offered load of the latency benchmarks (DESIGN.md §6: 2k requests/s).
const benchRate = 2000

// paced sends n calls at rate per second from a pool of workers and returns
// each call's latency measured from its scheduled start, so a stall shows up
// in the calls queued behind it (no coordinated omission).
func paced(b *testing.B, n, rate int, call func(i int) error) []time.Duration {
	b.Helper()
	lat := make([]time.Duration, n)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d) // pacing the load generator, not synchronisation
				}
				if err := call(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
				lat[i] = time.Since(due)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return lat
}

func quantile(lat []time.Duration, q float64) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
}

// BenchmarkPredictGBDTWithFeatureFetch is Predict end to end at 2k
// requests/s: gRPC in, one GetOnlineFeatures call to the real featureserver (in
// process, embedded store) over loopback gRPC, a 100-tree XGBoost model, the prediction logged to the
// embedded Kafka broker. noop_p99_ms is a grpc.health.v1 Check on the same
// server at the same rate, in the same run. Run with -benchtime=10000x.
func BenchmarkPredictGBDTWithFeatureFetch(b *testing.B) {
	e := startEnv(b, "testdata/experiments", "", true, func(c *modelserver.Config) { c.Common.LogLevel = "error" })
	const users = 1000
	for i := range users {
		u := fmt.Sprint("u", i)
		e.peer.Set(b, "user_transactions:txn_count_10m", i%5, "user_id", u)
		e.peer.Set(b, "user_transactions:txn_sum_1h", float64(i%300), "user_id", u)
		e.peer.Set(b, "user_profile:country", []string{"US", "DE"}[i%2], "user_id", u)
	}
	e.peer.Sync(b)
	client := e.serving()
	health := healthpb.NewHealthClient(e.conn)
	ctx := context.Background()
	reqs := make([]*servingv1.PredictRequest, users)
	for i := range reqs {
		reqs[i] = &servingv1.PredictRequest{Model: "fraud_xgb", EntityKeys: map[string]string{"user_id": fmt.Sprint("u", i)}, Features: amount(float64(i % 700))}
	}
	// Warm connections and caches.
	for i := range 200 {
		if _, err := client.Predict(ctx, reqs[i%users]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	lat := paced(b, b.N, benchRate, func(i int) error {
		resp, err := client.Predict(ctx, reqs[i%users])
		if err == nil && len(resp.GetDefaultedFeatures()) > 0 {
			err = fmt.Errorf("features defaulted under load: %v", resp.GetDefaultedFeatures())
		}
		return err
	})
	b.StopTimer()
	noop := paced(b, b.N, benchRate, func(int) error {
		_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	})
	b.ReportMetric(quantile(lat, 0.5), "p50_ms")
	b.ReportMetric(quantile(lat, 0.99), "p99_ms")
	b.ReportMetric(quantile(noop, 0.99), "noop_p99_ms")
	b.ReportMetric(0, "ns/op")
}
