// Package grpcapi holds the modelserver's gRPC handlers:
// tributary.serving.v1.PredictionService and the Open Inference Protocol's
// inference.GRPCInferenceService.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

// Metadata keys (and HTTP headers) that pin a variant or a version, for debugging.
const (
	VariantHeader = "x-tributary-variant"
	VersionHeader = "x-tributary-version"
)

// Status maps a core error to a gRPC status.
func Status(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	k := core.KindOf(err)
	if k == core.KindInternal && (errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		k = core.KindDeadlineExceeded
	}
	return status.Error(Code(k), err.Error())
}

// Code maps an error kind to a gRPC code.
func Code(k core.Kind) codes.Code {
	switch k {
	case core.KindInvalidArgument:
		return codes.InvalidArgument
	case core.KindNotFound:
		return codes.NotFound
	case core.KindUnavailable:
		return codes.Unavailable
	case core.KindResourceExhausted:
		return codes.ResourceExhausted
	case core.KindDeadlineExceeded:
		return codes.DeadlineExceeded
	case core.KindCanceled:
		return codes.Canceled
	}
	return codes.Internal
}

// pins reads the variant and version pins from incoming metadata.
func pins(ctx context.Context) (variant string, version int, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(VariantHeader); len(v) > 0 {
		variant = v[0]
	}
	if v := md.Get(VersionHeader); len(v) > 0 && v[0] != "" {
		version, err = strconv.Atoi(v[0])
		if err != nil || version < 1 {
			return "", 0, core.InvalidArgument("%s: %q is not a version number", VersionHeader, v[0])
		}
	}
	return variant, version, nil
}

// Serving implements tributary.serving.v1.PredictionService.
type Serving struct {
	servingv1.UnimplementedPredictionServiceServer
	P *core.Predictor
}

var _ servingv1.PredictionServiceServer = (*Serving)(nil)

// Predict scores one entity.
func (s *Serving) Predict(ctx context.Context, req *servingv1.PredictRequest) (*servingv1.PredictResponse, error) {
	creq, err := s.request(ctx, req.GetModel(), false)
	if err != nil {
		return nil, Status(ctx, err)
	}
	feats, err := features(req.GetFeatures(), "")
	if err != nil {
		return nil, Status(ctx, err)
	}
	creq.Rows = []core.Row{{EntityKeys: req.GetEntityKeys(), Features: feats}}
	preds, err := s.P.Predict(ctx, creq)
	if err != nil {
		return nil, Status(ctx, err)
	}
	return response(&preds[0]), nil
}

// PredictBatch scores many entities with one model.
func (s *Serving) PredictBatch(ctx context.Context, req *servingv1.PredictBatchRequest) (*servingv1.PredictBatchResponse, error) {
	creq, err := s.request(ctx, req.GetModel(), true)
	if err != nil {
		return nil, Status(ctx, err)
	}
	if len(req.GetRows()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "rows: need at least one row")
	}
	if len(req.GetRows()) > MaxBatchRows {
		return nil, status.Errorf(codes.InvalidArgument, "rows: %d rows, at most %d per call", len(req.GetRows()), MaxBatchRows)
	}
	creq.Rows = make([]core.Row, len(req.GetRows()))
	for i, r := range req.GetRows() {
		feats, err := features(r.GetFeatures(), fmt.Sprintf("rows[%d].", i))
		if err != nil {
			return nil, Status(ctx, err)
		}
		creq.Rows[i] = core.Row{EntityKeys: r.GetEntityKeys(), Features: feats}
	}
	preds, err := s.P.Predict(ctx, creq)
	if err != nil {
		return nil, Status(ctx, err)
	}
	out := &servingv1.PredictBatchResponse{Predictions: make([]*servingv1.PredictResponse, len(preds))}
	for i := range preds {
		out.Predictions[i] = response(&preds[i])
	}
	return out, nil
}

// MaxBatchRows bounds PredictBatch.
const MaxBatchRows = 10000

func (s *Serving) request(ctx context.Context, modelName string, batch bool) (*core.Request, error) {
	if modelName == "" {
		return nil, core.InvalidArgument("model: required")
	}
	variant, version, err := pins(ctx)
	if err != nil {
		return nil, err
	}
	return &core.Request{Model: modelName, Version: version, Variant: variant, Batch: batch}, nil
}

func features(in map[string]*featuresv1.Value, prefix string) (map[string]model.Raw, error) {
	out := make(map[string]model.Raw, len(in))
	for name, v := range in {
		switch k := v.GetKind().(type) {
		case *featuresv1.Value_DoubleValue:
			out[name] = model.Num(k.DoubleValue)
		case *featuresv1.Value_Int64Value:
			out[name] = model.Num(float64(k.Int64Value))
		case *featuresv1.Value_BoolValue:
			if k.BoolValue {
				out[name] = model.Num(1)
			} else {
				out[name] = model.Num(0)
			}
		case *featuresv1.Value_StringValue:
			out[name] = model.Str(k.StringValue)
		default:
			return nil, core.InvalidArgument("%sfeatures.%s: no value set", prefix, name)
		}
	}
	return out, nil
}

func response(p *core.Prediction) *servingv1.PredictResponse {
	out := &servingv1.PredictResponse{
		PredictionId: p.ID, Model: p.Model, Version: strconv.Itoa(p.Version), Variant: p.Variant,
		Outputs: make(map[string]float64, len(p.Outputs)), DefaultedFeatures: p.Defaulted,
	}
	for _, o := range p.Outputs {
		out.Outputs[o.Name] = o.Value
	}
	return out
}
