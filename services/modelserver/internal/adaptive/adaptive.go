// Package adaptive sets the weights of adaptive ensembles from the members'
// recent quality, read from the metrics service (tributary.metrics.v1) over
// gRPC: a greedy bandit with a floor, so every member keeps some traffic
// weight and can recover.
package adaptive

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"

	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

var _ core.EnsembleWeights = (*Tuner)(nil)

// Tuner refreshes adaptive ensemble weights.
type Tuner struct {
	conn   *grpc.ClientConn
	client metricsv1.MetricsServiceClient
	models core.Models
	log    *slog.Logger
	clock  func() time.Time

	mu      sync.RWMutex
	weights map[string][]float64
	members map[string][]string
}

// New connects lazily to the metrics service at addr.
func New(addr string, models core.Models, meter metric.Meter, log *slog.Logger) (*Tuner, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("metrics-addr: %w", err)
	}
	t := &Tuner{conn: conn, client: metricsv1.NewMetricsServiceClient(conn), models: models, log: log, clock: time.Now,
		weights: map[string][]float64{}, members: map[string][]string{}}
	if meter != nil {
		_, err = meter.Float64ObservableGauge("tributary_modelserver_ensemble_weight",
			metric.WithDescription("current weight of each member of an adaptive ensemble"),
			metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
				t.mu.RLock()
				defer t.mu.RUnlock()
				for ens, w := range t.weights {
					for i, v := range w {
						o.Observe(v, metric.WithAttributes(attribute.String("ensemble", ens), attribute.String("member", t.members[ens][i])))
					}
				}
				return nil
			}))
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Close closes the connection.
func (t *Tuner) Close() error { return t.conn.Close() }

// Weights implements core.EnsembleWeights.
func (t *Tuner) Weights(ensemble string) []float64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.weights[ensemble]
}

// Run refreshes the weights every interval until ctx ends.
func (t *Tuner) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		t.Refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Refresh recomputes the weights of every adaptive ensemble once.
func (t *Tuner) Refresh(ctx context.Context) {
	snap := t.models.Snapshot()
	next := map[string][]float64{}
	members := map[string][]string{}
	for _, name := range snap.Names() {
		m, _ := snap.Get(name)
		e := m.Config.Ensemble
		if e == nil || e.Adaptive == nil {
			continue
		}
		q, err := t.qualities(ctx, e)
		if err != nil {
			t.log.Debug("adaptive ensemble keeps its weights", "ensemble", name, "err", err)
			continue
		}
		next[name] = Shares(q, e.Adaptive.Floor)
		for _, mem := range e.Members {
			members[name] = append(members[name], mem.Name)
		}
	}
	t.mu.Lock()
	t.weights, t.members = next, members
	t.mu.Unlock()
}

func (t *Tuner) qualities(ctx context.Context, e *model.Ensemble) ([]float64, error) {
	a := e.Adaptive
	now := t.clock()
	q := make([]float64, len(e.Members))
	for i, mem := range e.Members {
		req := &metricsv1.GetModelHealthRequest{Model: mem.Model, StartTime: timestamppb.New(now.Add(-time.Duration(a.Window))), EndTime: timestamppb.New(now)}
		if mem.Version > 0 {
			req.Version = strconv.Itoa(mem.Version)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := t.client.GetModelHealth(cctx, req)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", mem.Name, err)
		}
		tot := resp.GetTotal()
		if tot.GetLabeled() < a.MinLabeled {
			return nil, fmt.Errorf("member %s: %d labeled predictions, need %d", mem.Name, tot.GetLabeled(), a.MinLabeled)
		}
		switch a.Metric {
		case "auc":
			q[i] = tot.GetAuc() - 0.5
		case "accuracy":
			q[i] = tot.GetAccuracy() - 0.5
		case "log_loss":
			q[i] = math.Ln2 - tot.GetLogLoss()
		}
		if !(q[i] > 0) {
			q[i] = 0
		}
	}
	return q, nil
}

// Shares turns qualities into weights: floor each, the rest in proportion to
// quality (evenly when no member beats chance).
func Shares(q []float64, floor float64) []float64 {
	n := float64(len(q))
	sum := 0.0
	for _, v := range q {
		sum += v
	}
	out := make([]float64, len(q))
	for i, v := range q {
		if sum > 0 {
			out[i] = floor + (1-n*floor)*v/sum
		} else {
			out[i] = 1 / n
		}
	}
	return out
}
