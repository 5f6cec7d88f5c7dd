package grpcapi_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// openLoop issues b.N calls at rate per second, each on its own goroutine
// at its scheduled time whatever the earlier calls are doing (so a slow
// server shows up as latency, not as a lower rate), and reports p50, p99
// and the achieved rate.
func openLoop(b *testing.B, rate int, call func(context.Context) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // pacing the load generator, not synchronisation
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			t0 := time.Now()
			if err := call(ctx); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
			lat[i] = time.Since(t0)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(0, "ns/op")
}

func benchmarkRate(b *testing.B, entities, rate int) {
	e := serve(b, entities, core.DefaultLimits())
	req := request(e.view, entities)
	openLoop(b, rate, func(ctx context.Context) error {
		_, err := e.client.GetOnlineFeatures(ctx, req)
		return err
	})
}

func BenchmarkRate_1x50_1k(b *testing.B)    { benchmarkRate(b, 1, 1000) }
func BenchmarkRate_1x50_5k(b *testing.B)    { benchmarkRate(b, 1, 5000) }
func BenchmarkRate_100x50_100(b *testing.B) { benchmarkRate(b, 100, 100) }

// BenchmarkRate_Noop_1k is a health check at 1k/s, the floor to compare with.
func BenchmarkRate_Noop_1k(b *testing.B) {
	e := serve(b, 0, core.DefaultLimits())
	openLoop(b, 1000, func(ctx context.Context) error {
		_, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	})
}
