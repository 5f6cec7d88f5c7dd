// Package oiprest serves the Open Inference Protocol v2 REST routes
// (/v2/health/live, /v2/health/ready, /v2, /v2/models/{name}[/versions/{v}],
// .../ready, .../infer) with the JSON tensor encoding of the specification.
package oiprest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/grpcapi"
	"github.com/tributary-ml/tributary/services/modelserver/internal/oip"
)

// MaxBody bounds an infer request body.
const MaxBody = 16 << 20

// Handler serves the routes.
type Handler struct {
	P     *core.Predictor
	Ready func() bool
}

// Routes lists the patterns and handlers to register on the admin server.
func (h *Handler) Routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /v2/health/live":                             h.live,
		"GET /v2/health/ready":                            h.ready,
		"GET /v2":                                         h.server,
		"GET /v2/models/{name}":                           h.metadata,
		"GET /v2/models/{name}/versions/{version}":        h.metadata,
		"GET /v2/models/{name}/ready":                     h.modelReady,
		"GET /v2/models/{name}/versions/{version}/ready":  h.modelReady,
		"POST /v2/models/{name}/infer":                    h.infer,
		"POST /v2/models/{name}/versions/{version}/infer": h.infer,
	}
}

func (h *Handler) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (h *Handler) ready(w http.ResponseWriter, _ *http.Request) {
	ok := h.Ready == nil || h.Ready()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]bool{"ready": ok})
}

func (h *Handler) server(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": grpcapi.ServerName, "version": grpcapi.ServerVersion, "extensions": []string{}})
}

func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	md, err := grpcapi.Metadata(r.Context(), h.P, r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, md)
}

func (h *Handler) modelReady(w http.ResponseWriter, r *http.Request) {
	_, _, err := grpcapi.Lookup(h.P.Models(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "ready": true})
}

// inferRequest is the JSON body of an infer request.
type inferRequest struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Inputs     []jsonTensor   `json:"inputs"`
	Outputs    []struct {
		Name       string         `json:"name"`
		Parameters map[string]any `json:"parameters,omitempty"`
	} `json:"outputs,omitempty"`
}

type jsonTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

type outTensor struct {
	Name     string    `json:"name"`
	Shape    []int64   `json:"shape"`
	Datatype string    `json:"datatype"`
	Data     []float64 `json:"data"`
}

type inferResponse struct {
	ModelName    string            `json:"model_name"`
	ModelVersion string            `json:"model_version,omitempty"`
	ID           string            `json:"id,omitempty"`
	Parameters   map[string]string `json:"parameters,omitempty"`
	Outputs      []outTensor       `json:"outputs"`
}

func (h *Handler) infer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	snap := h.P.Models()
	entry, version, err := grpcapi.Lookup(snap, r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		writeError(w, core.InvalidArgument("body: %v", err))
		return
	}
	if len(body) > MaxBody {
		writeError(w, core.InvalidArgument("body: larger than %d bytes", MaxBody))
		return
	}
	req, tensors, err := DecodeInfer(body)
	if err != nil {
		writeError(w, err)
		return
	}
	creq, err := oip.ToRequest(entry.Name, version, tensors, core.RequestInputs(snap, entry))
	if err != nil {
		writeError(w, err)
		return
	}
	creq.Variant = r.Header.Get(grpcapi.VariantHeader)
	if v := r.Header.Get(grpcapi.VersionHeader); v != "" && creq.Version == 0 {
		if creq.Version, err = strconv.Atoi(v); err != nil || creq.Version < 1 {
			writeError(w, core.InvalidArgument("%s: %q is not a version number", grpcapi.VersionHeader, v))
			return
		}
	}
	var requested []string
	for _, o := range req.Outputs {
		requested = append(requested, o.Name)
	}
	names, err := oip.OutputNames(entry.Config, requested)
	if err != nil {
		writeError(w, err)
		return
	}
	preds, err := h.P.Predict(ctx, creq)
	if err != nil {
		writeError(w, err)
		return
	}
	resp := inferResponse{ModelName: entry.Name, ModelVersion: strconv.Itoa(preds[0].Version), ID: req.ID, Parameters: oip.Parameters(preds)}
	for _, name := range names {
		resp.Outputs = append(resp.Outputs, outTensor{Name: name, Shape: []int64{int64(len(preds)), 1}, Datatype: "FP64", Data: oip.Column(preds, name)})
	}
	writeJSON(w, http.StatusOK, resp)
}

// DecodeInfer decodes a JSON infer request body into tensors; data may be
// flat or nested row-major arrays.
func DecodeInfer(body []byte) (*inferRequest, []oip.Tensor, error) {
	var req inferRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, core.InvalidArgument("body: not an inference request: %v", err)
	}
	tensors := make([]oip.Tensor, 0, len(req.Inputs))
	for i, in := range req.Inputs {
		field := fmt.Sprintf("inputs[%d] (%s)", i, in.Name)
		if in.Name == "" {
			return nil, nil, core.InvalidArgument("inputs[%d].name: required", i)
		}
		if len(in.Shape) == 0 || len(in.Shape) > 2 || in.Shape[0] < 1 || in.Shape[0] > oip.MaxBatch || (len(in.Shape) == 2 && in.Shape[1] != 1) {
			return nil, nil, core.InvalidArgument("%s.shape: %v; want [batch] or [batch, 1] with batch in 1..%d", field, in.Shape, oip.MaxBatch)
		}
		n := int(in.Shape[0])
		var flat []any
		if len(in.Data) == 0 {
			return nil, nil, core.InvalidArgument("%s.data: missing", field)
		}
		var data any
		if err := json.Unmarshal(in.Data, &data); err != nil {
			return nil, nil, core.InvalidArgument("%s.data: %v", field, err)
		}
		if err := flatten(data, &flat, 0); err != nil {
			return nil, nil, core.InvalidArgument("%s.data: %v", field, err)
		}
		if len(flat) != n {
			return nil, nil, core.InvalidArgument("%s: shape %v holds %d elements, data has %d", field, in.Shape, n, len(flat))
		}
		t := oip.Tensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
		switch in.Datatype {
		case "BYTES":
			t.Strs = make([]string, n)
			for j, v := range flat {
				s, ok := v.(string)
				if !ok {
					return nil, nil, core.InvalidArgument("%s.data[%d]: BYTES elements are strings, got %v", field, j, v)
				}
				t.Strs[j] = s
			}
		case "BOOL":
			t.Nums = make([]float64, n)
			for j, v := range flat {
				b, ok := v.(bool)
				if !ok {
					return nil, nil, core.InvalidArgument("%s.data[%d]: BOOL elements are true or false, got %v", field, j, v)
				}
				if b {
					t.Nums[j] = 1
				}
			}
		case "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64":
			t.Nums = make([]float64, n)
			for j, v := range flat {
				f, ok := v.(float64)
				if !ok {
					return nil, nil, core.InvalidArgument("%s.data[%d]: %s elements are numbers, got %v", field, j, in.Datatype, v)
				}
				if in.Datatype[0] != 'F' && f != math.Trunc(f) {
					return nil, nil, core.InvalidArgument("%s.data[%d]: %v is not an integer for %s", field, j, f, in.Datatype)
				}
				t.Nums[j] = f
			}
		default:
			return nil, nil, core.InvalidArgument("%s.datatype: %q is not one of %s", field, in.Datatype, oip.Datatypes)
		}
		tensors = append(tensors, t)
	}
	return &req, tensors, nil
}

func flatten(v any, out *[]any, depth int) error {
	if depth > 2 {
		return fmt.Errorf("nested deeper than the shape allows")
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := flatten(e, out, depth+1); err != nil {
				return err
			}
		}
	default:
		if depth == 0 {
			return fmt.Errorf("must be an array")
		}
		if len(*out) > oip.MaxBatch {
			return fmt.Errorf("more than %d elements", oip.MaxBatch)
		}
		*out = append(*out, x)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// HTTPStatus maps an error kind to an HTTP status.
func HTTPStatus(k core.Kind) int {
	switch k {
	case core.KindInvalidArgument:
		return http.StatusBadRequest
	case core.KindNotFound:
		return http.StatusNotFound
	case core.KindUnavailable:
		return http.StatusServiceUnavailable
	case core.KindResourceExhausted:
		return http.StatusTooManyRequests
	case core.KindDeadlineExceeded:
		return http.StatusGatewayTimeout
	case core.KindCanceled:
		return 499
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, HTTPStatus(core.KindOf(err)), map[string]string{"error": err.Error()})
}
