// Package oip translates Open Inference Protocol v2 tensors (from gRPC or
// REST) into prediction requests and predictions back into output tensors.
// It is pure: no I/O.
package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tributary-ml/tributary/proto/gen/go/inference"
	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

// MaxBatch bounds the rows of one inference request.
const MaxBatch = 10000

// Tensor is a decoded input tensor; exactly one of the slices is set.
type Tensor struct {
	Name     string
	Datatype string
	Shape    []int64
	Nums     []float64
	Strs     []string
}

// Len is the number of elements.
func (t *Tensor) Len() int {
	if t.Strs != nil {
		return len(t.Strs)
	}
	return len(t.Nums)
}

// elemSize is the raw byte size of a fixed-size datatype (0 for BYTES, -1 unknown).
func elemSize(dt string) int {
	switch dt {
	case "BOOL", "INT8", "UINT8":
		return 1
	case "INT16", "UINT16":
		return 2
	case "INT32", "UINT32", "FP32":
		return 4
	case "INT64", "UINT64", "FP64":
		return 8
	case "BYTES":
		return 0
	}
	return -1
}

// Datatypes lists the datatypes accepted for inputs.
const Datatypes = "BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FP32, FP64, BYTES"

// DecodeGRPC decodes the inputs of a gRPC ModelInferRequest, typed or raw.
func DecodeGRPC(req *inference.ModelInferRequest) ([]Tensor, error) {
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, core.InvalidArgument("raw_input_contents: %d entries for %d inputs", len(raw), len(req.GetInputs()))
	}
	out := make([]Tensor, 0, len(req.GetInputs()))
	for i, in := range req.GetInputs() {
		field := fmt.Sprintf("inputs[%d] (%s)", i, in.GetName())
		if in.GetName() == "" {
			return nil, core.InvalidArgument("inputs[%d].name: required", i)
		}
		t := Tensor{Name: in.GetName(), Datatype: in.GetDatatype(), Shape: in.GetShape()}
		n, err := elements(field, t.Shape)
		if err != nil {
			return nil, err
		}
		if elemSize(t.Datatype) < 0 {
			return nil, core.InvalidArgument("%s.datatype: %q is not one of %s", field, t.Datatype, Datatypes)
		}
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return nil, core.InvalidArgument("%s.contents: set together with raw_input_contents", field)
			}
			if err := decodeRaw(field, &t, raw[i], n); err != nil {
				return nil, err
			}
		} else if err := decodeContents(field, &t, in.GetContents()); err != nil {
			return nil, err
		}
		if t.Len() != n {
			return nil, core.InvalidArgument("%s: shape %v holds %d elements, contents have %d", field, t.Shape, n, t.Len())
		}
		out = append(out, t)
	}
	return out, nil
}

// elements checks a shape and returns its element count.
func elements(field string, shape []int64) (int, error) {
	if len(shape) == 0 || len(shape) > 2 {
		return 0, core.InvalidArgument("%s.shape: %v; want [batch] or [batch, 1]", field, shape)
	}
	if shape[0] < 1 || shape[0] > MaxBatch {
		return 0, core.InvalidArgument("%s.shape: batch %d is not in 1..%d", field, shape[0], MaxBatch)
	}
	if len(shape) == 2 && shape[1] != 1 {
		return 0, core.InvalidArgument("%s.shape: %v; want [batch] or [batch, 1] (one value per row)", field, shape)
	}
	return int(shape[0]), nil
}

func decodeContents(field string, t *Tensor, c *inference.InferTensorContents) error {
	if c == nil {
		return core.InvalidArgument("%s.contents: missing (and no raw_input_contents)", field)
	}
	has := func(name string, n int) error {
		// Contents of another type than the datatype are an error, not silently ignored.
		others := map[string]int{
			"bool_contents": len(c.GetBoolContents()), "int_contents": len(c.GetIntContents()), "int64_contents": len(c.GetInt64Contents()),
			"uint_contents": len(c.GetUintContents()), "uint64_contents": len(c.GetUint64Contents()), "fp32_contents": len(c.GetFp32Contents()),
			"fp64_contents": len(c.GetFp64Contents()), "bytes_contents": len(c.GetBytesContents()),
		}
		for k, v := range others {
			if k != name && v > 0 {
				return core.InvalidArgument("%s.contents: datatype %s takes %s, got %s", field, t.Datatype, name, k)
			}
		}
		return nil
	}
	switch t.Datatype {
	case "BOOL":
		t.Nums = make([]float64, 0, len(c.GetBoolContents()))
		for _, b := range c.GetBoolContents() {
			t.Nums = append(t.Nums, b2f(b))
		}
		return has("bool_contents", len(t.Nums))
	case "INT8", "INT16", "INT32":
		t.Nums = conv(c.GetIntContents())
		return has("int_contents", len(t.Nums))
	case "INT64":
		t.Nums = conv(c.GetInt64Contents())
		return has("int64_contents", len(t.Nums))
	case "UINT8", "UINT16", "UINT32":
		t.Nums = conv(c.GetUintContents())
		return has("uint_contents", len(t.Nums))
	case "UINT64":
		t.Nums = conv(c.GetUint64Contents())
		return has("uint64_contents", len(t.Nums))
	case "FP32":
		t.Nums = conv(c.GetFp32Contents())
		return has("fp32_contents", len(t.Nums))
	case "FP64":
		t.Nums = slices.Clone(c.GetFp64Contents())
		if t.Nums == nil {
			t.Nums = []float64{}
		}
		return has("fp64_contents", len(t.Nums))
	case "BYTES":
		t.Strs = make([]string, 0, len(c.GetBytesContents()))
		for _, b := range c.GetBytesContents() {
			t.Strs = append(t.Strs, string(b))
		}
		return has("bytes_contents", len(t.Strs))
	}
	return core.InvalidArgument("%s.datatype: %q is not one of %s", field, t.Datatype, Datatypes)
}

func conv[T int32 | int64 | uint32 | uint64 | float32](in []T) []float64 {
	out := make([]float64, len(in))
	for i, v := range in {
		out[i] = float64(v)
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// decodeRaw decodes little-endian raw contents; BYTES elements are a 4-byte
// little-endian length followed by the bytes.
func decodeRaw(field string, t *Tensor, b []byte, n int) error {
	size := elemSize(t.Datatype)
	if size == 0 {
		t.Strs = make([]string, 0, n)
		for len(b) > 0 {
			if len(b) < 4 {
				return core.InvalidArgument("%s: raw BYTES element truncated in its length prefix", field)
			}
			l := binary.LittleEndian.Uint32(b)
			b = b[4:]
			if uint64(l) > uint64(len(b)) {
				return core.InvalidArgument("%s: raw BYTES element of %d bytes, only %d left", field, l, len(b))
			}
			if len(t.Strs) == n {
				return core.InvalidArgument("%s: raw contents hold more than the %d elements of the shape", field, n)
			}
			t.Strs = append(t.Strs, string(b[:l]))
			b = b[l:]
		}
		return nil
	}
	if len(b) != n*size {
		return core.InvalidArgument("%s: raw contents are %d bytes; shape %v of %s needs %d", field, len(b), t.Shape, t.Datatype, n*size)
	}
	t.Nums = make([]float64, n)
	for i := range n {
		e := b[i*size : (i+1)*size]
		var v float64
		switch t.Datatype {
		case "BOOL":
			v = b2f(e[0] != 0)
		case "INT8":
			v = float64(int8(e[0]))
		case "UINT8":
			v = float64(e[0])
		case "INT16":
			v = float64(int16(binary.LittleEndian.Uint16(e)))
		case "UINT16":
			v = float64(binary.LittleEndian.Uint16(e))
		case "INT32":
			v = float64(int32(binary.LittleEndian.Uint32(e)))
		case "UINT32":
			v = float64(binary.LittleEndian.Uint32(e))
		case "INT64":
			v = float64(int64(binary.LittleEndian.Uint64(e)))
		case "UINT64":
			v = float64(binary.LittleEndian.Uint64(e))
		case "FP32":
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(e)))
		case "FP64":
			v = math.Float64frombits(binary.LittleEndian.Uint64(e))
		}
		t.Nums[i] = v
	}
	return nil
}

// ToRequest turns tensors into a prediction request: BYTES tensors named
// like a request-time input are string features, other BYTES tensors are
// entity keys (named by join key); numeric and BOOL tensors are request-time
// inputs named by input name. requestInputs are the request-time inputs of
// the models the request may run.
func ToRequest(modelName string, version int, tensors []Tensor, requestInputs map[string]bool) (*core.Request, error) {
	if len(tensors) == 0 {
		return nil, core.InvalidArgument("inputs: need at least one input tensor")
	}
	n := -1
	seen := map[string]bool{}
	for i := range tensors {
		t := &tensors[i]
		if seen[t.Name] {
			return nil, core.InvalidArgument("inputs[%d] (%s): duplicate input", i, t.Name)
		}
		seen[t.Name] = true
		if n >= 0 && t.Len() != n {
			return nil, core.InvalidArgument("inputs[%d] (%s): batch of %d rows, other inputs have %d", i, t.Name, t.Len(), n)
		}
		n = t.Len()
		if t.Strs == nil && !requestInputs[t.Name] {
			return nil, core.InvalidArgument("inputs[%d] (%s): model %q has no request-time input of that name (request-time inputs: %s; entity keys are BYTES tensors)", i, t.Name, modelName, names(requestInputs))
		}
		if t.Nums != nil {
			for j, v := range t.Nums {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return nil, core.InvalidArgument("inputs[%d] (%s): element %d is %v; inputs must be finite", i, t.Name, j, v)
				}
			}
		}
	}
	if n < 1 {
		return nil, core.InvalidArgument("inputs: empty batch")
	}
	req := &core.Request{Model: modelName, Version: version, Rows: make([]core.Row, n), Batch: n > 1}
	for r := range req.Rows {
		req.Rows[r] = core.Row{EntityKeys: map[string]string{}, Features: map[string]model.Raw{}}
	}
	for _, t := range tensors {
		for r := range n {
			switch {
			case t.Strs != nil && !requestInputs[t.Name]:
				req.Rows[r].EntityKeys[t.Name] = t.Strs[r]
			case t.Strs != nil:
				req.Rows[r].Features[t.Name] = model.Str(t.Strs[r])
			default:
				req.Rows[r].Features[t.Name] = model.Num(t.Nums[r])
			}
		}
	}
	return req, nil
}

func names(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// OutputNames resolves the requested outputs (all when none are named).
func OutputNames(cfg *model.Config, requested []string) ([]string, error) {
	if len(requested) == 0 {
		return cfg.Outputs, nil
	}
	for i, r := range requested {
		if !slices.Contains(cfg.Outputs, r) {
			return nil, core.InvalidArgument("outputs[%d] (%s): model %q has outputs %v", i, r, cfg.Name, cfg.Outputs)
		}
	}
	return requested, nil
}

// Column returns output name's value for every prediction.
func Column(preds []core.Prediction, name string) []float64 {
	out := make([]float64, len(preds))
	for i := range preds {
		for _, o := range preds[i].Outputs {
			if o.Name == name {
				out[i] = o.Value
			}
		}
	}
	return out
}

// Parameters are the per-row facts returned as response parameters:
// prediction_ids, versions, variants (comma-separated, one per row) and
// defaulted_features (rows separated by ';', names by ',').
func Parameters(preds []core.Prediction) map[string]string {
	ids := make([]string, len(preds))
	vers := make([]string, len(preds))
	vars := make([]string, len(preds))
	def := make([]string, len(preds))
	for i, p := range preds {
		ids[i] = p.ID
		vers[i] = fmt.Sprint(p.Version)
		vars[i] = p.Variant
		def[i] = strings.Join(p.Defaulted, ",")
	}
	return map[string]string{
		"prediction_ids":     strings.Join(ids, ","),
		"versions":           strings.Join(vers, ","),
		"variants":           strings.Join(vars, ","),
		"defaulted_features": strings.Join(def, ";"),
	}
}
