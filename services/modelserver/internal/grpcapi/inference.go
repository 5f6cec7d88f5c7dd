package grpcapi

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"

	"github.com/tributary-ml/tributary/proto/gen/go/inference"

	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
	"github.com/tributary-ml/tributary/services/modelserver/internal/oip"
)

// ServerName and ServerVersion answer ServerMetadata.
const (
	ServerName    = "tributary-modelserver"
	ServerVersion = "0.1.0"
)

// Inference implements the Open Inference Protocol's GRPCInferenceService.
type Inference struct {
	inference.UnimplementedGRPCInferenceServiceServer
	P *core.Predictor
	// Ready reports server readiness.
	Ready func() bool
}

var _ inference.GRPCInferenceServiceServer = (*Inference)(nil)

// ServerLive answers true while the process serves.
func (s *Inference) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	return &inference.ServerLiveResponse{Live: true}, nil
}

// ServerReady tells whether the server is ready.
func (s *Inference) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	return &inference.ServerReadyResponse{Ready: s.Ready == nil || s.Ready()}, nil
}

// ModelReady tells whether a model (and version) is loaded; an unknown model is not ready.
func (s *Inference) ModelReady(_ context.Context, req *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	_, _, err := Lookup(s.P.Models(), req.GetName(), req.GetVersion())
	return &inference.ModelReadyResponse{Ready: err == nil}, nil
}

// ServerMetadata describes the server.
func (s *Inference) ServerMetadata(context.Context, *inference.ServerMetadataRequest) (*inference.ServerMetadataResponse, error) {
	return &inference.ServerMetadataResponse{Name: ServerName, Version: ServerVersion, Extensions: []string{}}, nil
}

// ModelMetadata describes a model's tensors.
func (s *Inference) ModelMetadata(ctx context.Context, req *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	md, err := Metadata(ctx, s.P, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, Status(ctx, err)
	}
	out := &inference.ModelMetadataResponse{Name: md.Name, Versions: md.Versions, Platform: md.Platform}
	for _, t := range md.Inputs {
		out.Inputs = append(out.Inputs, &inference.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range md.Outputs {
		out.Outputs = append(out.Outputs, &inference.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return out, nil
}

// ModelInfer scores a batch.
func (s *Inference) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	snap := s.P.Models()
	entry, version, err := Lookup(snap, req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, Status(ctx, err)
	}
	tensors, err := oip.DecodeGRPC(req)
	if err != nil {
		return nil, Status(ctx, err)
	}
	creq, err := oip.ToRequest(entry.Name, version, tensors, core.RequestInputs(snap, entry))
	if err != nil {
		return nil, Status(ctx, err)
	}
	variant, pinned, err := pins(ctx)
	if err != nil {
		return nil, Status(ctx, err)
	}
	creq.Variant = variant
	if creq.Version == 0 {
		creq.Version = pinned
	}
	var requested []string
	for _, o := range req.GetOutputs() {
		requested = append(requested, o.GetName())
	}
	outNames, err := oip.OutputNames(entry.Config, requested)
	if err != nil {
		return nil, Status(ctx, err)
	}
	preds, err := s.P.Predict(ctx, creq)
	if err != nil {
		return nil, Status(ctx, err)
	}
	resp := &inference.ModelInferResponse{ModelName: entry.Name, ModelVersion: strconv.Itoa(preds[0].Version), Id: req.GetId(),
		Parameters: map[string]*inference.InferParameter{}}
	for k, v := range oip.Parameters(preds) {
		resp.Parameters[k] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: v}}
	}
	raw := len(req.GetRawInputContents()) > 0
	n := int64(len(preds))
	for _, name := range outNames {
		col := oip.Column(preds, name)
		t := &inference.ModelInferResponse_InferOutputTensor{Name: name, Datatype: "FP64", Shape: []int64{n, 1}}
		if raw {
			b := make([]byte, 8*len(col))
			for i, v := range col {
				binary.LittleEndian.PutUint64(b[i*8:], math.Float64bits(v))
			}
			resp.RawOutputContents = append(resp.RawOutputContents, b)
		} else {
			t.Contents = &inference.InferTensorContents{Fp64Contents: col}
		}
		resp.Outputs = append(resp.Outputs, t)
	}
	return resp, nil
}

// Lookup finds a model and parses an optional version ("" → 0, the default).
func Lookup(snap *model.Set, name, version string) (*model.Entry, int, error) {
	if name == "" {
		return nil, 0, core.InvalidArgument("model name: required")
	}
	entry, ok := snap.Get(name)
	if !ok {
		return nil, 0, core.NotFound("model %q is not in the repository", name)
	}
	if version == "" {
		if _, ok := entry.Version(0); !ok {
			return nil, 0, core.Unavailable("model %q has no loaded version", name)
		}
		return entry, 0, nil
	}
	v, err := strconv.Atoi(version)
	if err != nil || v < 1 {
		return nil, 0, core.InvalidArgument("model version: %q is not a version number", version)
	}
	if _, ok := entry.Version(v); !ok {
		return nil, 0, core.NotFound("model %q has no loaded version %d (loaded: %v)", name, v, entry.VersionNumbers())
	}
	return entry, v, nil
}

// TensorMeta describes a tensor.
type TensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMeta is a model's metadata, for gRPC and REST.
type ModelMeta struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions"`
	Platform string       `json:"platform"`
	Inputs   []TensorMeta `json:"inputs"`
	Outputs  []TensorMeta `json:"outputs"`
}

// Metadata describes a model: entity keys as BYTES inputs, request-time
// inputs as FP64 (any numeric datatype is accepted), outputs as FP64.
func Metadata(ctx context.Context, p *core.Predictor, name, version string) (*ModelMeta, error) {
	snap := p.Models()
	entry, _, err := Lookup(snap, name, version)
	if err != nil {
		return nil, err
	}
	md := &ModelMeta{Name: entry.Name, Platform: "tributary_" + entry.Config.Format, Inputs: []TensorMeta{}, Outputs: []TensorMeta{}}
	for _, v := range entry.VersionNumbers() {
		md.Versions = append(md.Versions, strconv.Itoa(v))
	}
	for _, k := range p.EntityKeys(ctx, snap, entry) {
		md.Inputs = append(md.Inputs, TensorMeta{Name: k, Datatype: "BYTES", Shape: []int64{-1, 1}})
	}
	for _, in := range entry.Config.Inputs {
		if in.FromFeatureServer() {
			continue
		}
		dt := "FP64"
		if in.Transform != nil && in.Transform.Type == model.TransformOneHot {
			dt = "BYTES"
		}
		md.Inputs = append(md.Inputs, TensorMeta{Name: in.Name, Datatype: dt, Shape: []int64{-1, 1}})
	}
	for _, o := range entry.Config.Outputs {
		md.Outputs = append(md.Outputs, TensorMeta{Name: o, Datatype: "FP64", Shape: []int64{-1, 1}})
	}
	return md, nil
}
