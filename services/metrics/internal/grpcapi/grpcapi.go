// Package grpcapi serves tributary.metrics.v1.MetricsService from a RowReader.
package grpcapi

import (
	"context"
	"errors"
	"math"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// DefaultRange is the time range of a request that names none.
const DefaultRange = time.Hour

// DefaultMaxRows bounds the rows one GetModelHealth answers.
const DefaultMaxRows = 50_000

// Models tells which models the model repository holds.
type Models interface {
	// Known reports whether the repository holds the model.
	Known(model string) bool
}

// Server is the MetricsService.
type Server struct {
	metricsv1.UnimplementedMetricsServiceServer
	reader  core.RowReader
	catalog core.Catalog
	models  Models
	now     func() time.Time
	maxRows int
}

// New serves reader's rows; catalog gives the baselines the merged total's
// drift is computed against; models (nil for no repository) tells a model
// without traffic yet from one that does not exist.
func New(reader core.RowReader, catalog core.Catalog, models Models, now func() time.Time, maxRows int) *Server {
	if now == nil {
		now = time.Now
	}
	if maxRows <= 0 {
		maxRows = DefaultMaxRows
	}
	return &Server{reader: reader, catalog: catalog, models: models, now: now, maxRows: maxRows}
}

func (s *Server) timeRange(start, end *timestamppb.Timestamp) (int64, int64, error) {
	var from, to time.Time
	if end != nil {
		if err := end.CheckValid(); err != nil {
			return 0, 0, status.Errorf(codes.InvalidArgument, "end_time: %v", err)
		}
		to = end.AsTime()
	}
	if start != nil {
		if err := start.CheckValid(); err != nil {
			return 0, 0, status.Errorf(codes.InvalidArgument, "start_time: %v", err)
		}
		from = start.AsTime()
	}
	switch {
	case start == nil && end == nil:
		to = s.now()
		from = to.Add(-DefaultRange)
	case start == nil:
		from = to.Add(-DefaultRange)
	case end == nil:
		to = from.Add(DefaultRange)
	}
	if !from.Before(to) {
		return 0, 0, status.Errorf(codes.InvalidArgument, "start_time: %s is not before end_time %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return from.UnixMilli(), to.UnixMilli(), nil
}

func storeError(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	default:
		return status.Errorf(codes.Unavailable, "%s: %v", what, err)
	}
}

// GetModelHealth returns the model's per-minute rows in the range and their merge.
func (s *Server) GetModelHealth(ctx context.Context, req *metricsv1.GetModelHealthRequest) (*metricsv1.GetModelHealthResponse, error) {
	if req.GetModel() == "" {
		return nil, status.Error(codes.InvalidArgument, "model: required")
	}
	from, to, err := s.timeRange(req.GetStartTime(), req.GetEndTime())
	if err != nil {
		return nil, err
	}
	rows, err := s.reader.Minutes(ctx, core.Query{
		Model: req.GetModel(), Version: req.GetVersion(), Variant: req.GetVariant(),
		FromMs: from, ToMs: to, Limit: s.maxRows,
	})
	if err != nil {
		return nil, storeError(ctx, "read model minutes", err)
	}
	if len(rows) > s.maxRows {
		return nil, status.Errorf(codes.ResourceExhausted, "more than %d minute rows in the range: narrow start_time/end_time or name a version and variant", s.maxRows)
	}
	if len(rows) == 0 {
		if err := s.exists(ctx, req.GetModel()); err != nil {
			return nil, err
		}
	}
	resp := &metricsv1.GetModelHealthResponse{Minutes: make([]*metricsv1.ModelMinute, len(rows))}
	for i, r := range rows {
		resp.Minutes[i] = toProto(r)
	}
	total := Merge(rows, s.catalog)
	total.Model = req.GetModel()
	total.Version = req.GetVersion()
	total.Variant = req.GetVariant()
	if v, ok := singleVersion(rows); ok && total.Version == "" {
		total.Version = v
	}
	total.Minute = from
	resp.Total = toProto(total)
	return resp, nil
}

// exists answers NotFound for a model that is neither in the model
// repository nor has metrics at any time (as the modelserver answers for
// it); a model of the repository without traffic yet, or one with metrics
// that left the repository, exists. Asked only when the range has no rows.
func (s *Server) exists(ctx context.Context, model string) error {
	if s.models != nil && s.models.Known(model) {
		return nil
	}
	rows, err := s.reader.Minutes(ctx, core.Query{Model: model, FromMs: 0, ToMs: math.MaxInt64, Limit: 1})
	if err != nil {
		return storeError(ctx, "read model minutes", err)
	}
	if len(rows) == 0 {
		return status.Errorf(codes.NotFound, "model %q is not in the model repository and has no metrics", model)
	}
	return nil
}

func singleVersion(rows []core.Row) (string, bool) {
	if len(rows) == 0 {
		return "", false
	}
	for _, r := range rows[1:] {
		if r.Version != rows[0].Version {
			return "", false
		}
	}
	return rows[0].Version, true
}

// Merge sums rows into one. With every row's state present the figures are
// exact (sketches and histograms merge); drift is computed only when all
// rows are of one model version (one baseline). Rows without state add only
// their counts.
func Merge(rows []core.Row, catalog core.Catalog) core.Row {
	st := core.NewState()
	var counts core.Metrics
	withState := true
	for _, r := range rows {
		if r.State == nil {
			withState = false
		} else {
			st.Merge(r.State)
		}
		counts.Requests += r.Requests
		counts.Errors += r.Errors
		counts.Labeled += r.Labeled
	}
	info := core.ModelInfo{Threshold: core.DefaultThreshold}
	if v, ok := singleVersion(rows); ok && catalog != nil {
		info = catalog.Model(rows[0].Model, v)
	}
	if !withState {
		return core.Row{Metrics: counts}
	}
	return core.Row{Metrics: st.Derive(info), State: st}
}

func toProto(r core.Row) *metricsv1.ModelMinute {
	hist := r.ScoreHistogram
	if hist == nil {
		hist = make([]int64, core.HistogramBins)
	}
	return &metricsv1.ModelMinute{
		Model: r.Model, Version: r.Version, Variant: r.Variant,
		Minute:   timestamppb.New(time.UnixMilli(r.Minute)),
		Requests: r.Requests, Errors: r.Errors,
		LatencyP50Ms: r.LatencyP50Ms, LatencyP95Ms: r.LatencyP95Ms, LatencyP99Ms: r.LatencyP99Ms,
		ScoreMean: r.ScoreMean, ScoreHistogram: hist,
		FeatureDefaultRate: r.FeatureDefaultRate, FeaturePsi: r.FeaturePSI, ScorePsi: r.ScorePSI,
		Labeled: r.Labeled, Accuracy: r.Accuracy,
		Precision: r.Precision, Recall: r.Recall, LogLoss: r.LogLoss, Auc: r.AUC,
		CalibrationError: r.CalibrationError, ScoreJs: r.ScoreJS, FeatureJs: r.FeatureJS,
	}
}

// ListModels lists the model keys with rows in the range.
func (s *Server) ListModels(ctx context.Context, req *metricsv1.ListModelsRequest) (*metricsv1.ListModelsResponse, error) {
	from, to, err := s.timeRange(req.GetStartTime(), req.GetEndTime())
	if err != nil {
		return nil, err
	}
	keys, err := s.reader.Models(ctx, from, to)
	if err != nil {
		return nil, storeError(ctx, "list models", err)
	}
	sort.Slice(keys, func(i, j int) bool { return core.LessModelKey(keys[i], keys[j]) })
	resp := &metricsv1.ListModelsResponse{Models: make([]*metricsv1.ModelKey, len(keys))}
	for i, k := range keys {
		resp.Models[i] = &metricsv1.ModelKey{Model: k.Model, Version: k.Version, Variant: k.Variant}
	}
	return resp, nil
}
