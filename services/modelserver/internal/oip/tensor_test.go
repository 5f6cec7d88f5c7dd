package oip

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/tributary-ml/tributary/proto/gen/go/inference"
	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
)

func TestRawContentsOfEveryDatatype(t *testing.T) {
	t.Parallel()
	le := binary.LittleEndian
	for _, tc := range []struct {
		dt   string
		raw  []byte
		want []float64
	}{
		{"BOOL", []byte{1, 0}, []float64{1, 0}},
		{"INT8", []byte{0xff, 7}, []float64{-1, 7}},
		{"UINT8", []byte{0xff, 7}, []float64{255, 7}},
		{"INT16", le.AppendUint16(le.AppendUint16(nil, 0xfffe), 300), []float64{-2, 300}},
		{"UINT16", le.AppendUint16(le.AppendUint16(nil, 0xfffe), 300), []float64{65534, 300}},
		{"INT32", le.AppendUint32(le.AppendUint32(nil, 0xfffffffd), 70000), []float64{-3, 70000}},
		{"UINT32", le.AppendUint32(le.AppendUint32(nil, 4000000000), 1), []float64{4000000000, 1}},
		{"INT64", le.AppendUint64(le.AppendUint64(nil, math.MaxUint64), 1<<40), []float64{-1, 1 << 40}},
		{"UINT64", le.AppendUint64(le.AppendUint64(nil, 1<<63), 5), []float64{1 << 63, 5}},
		{"FP32", le.AppendUint32(le.AppendUint32(nil, math.Float32bits(1.5)), math.Float32bits(-2.25)), []float64{1.5, -2.25}},
		{"FP64", le.AppendUint64(le.AppendUint64(nil, math.Float64bits(0.1)), math.Float64bits(-1e300)), []float64{0.1, -1e300}},
	} {
		req := &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: tc.dt, Shape: []int64{2, 1}}},
			RawInputContents: [][]byte{tc.raw}}
		ts, err := DecodeGRPC(req)
		if err != nil {
			t.Errorf("%s: %v", tc.dt, err)
			continue
		}
		if got := ts[0].Nums; len(got) != 2 || got[0] != tc.want[0] || got[1] != tc.want[1] {
			t.Errorf("%s: %v, want %v", tc.dt, got, tc.want)
		}
	}
	var b []byte
	for _, s := range []string{"u1", "", "ü"} {
		b = le.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	ts, err := DecodeGRPC(&inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "user_id", Datatype: "BYTES", Shape: []int64{3}}},
		RawInputContents: [][]byte{b}})
	if err != nil || strings.Join(ts[0].Strs, "|") != "u1||ü" {
		t.Errorf("raw BYTES: %v %v", ts, err)
	}
}

func TestTypedContentsAndErrors(t *testing.T) {
	t.Parallel()
	ok := &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
		{Name: "user_id", Datatype: "BYTES", Shape: []int64{2}, Contents: &inference.InferTensorContents{BytesContents: [][]byte{[]byte("a"), []byte("b")}}},
		{Name: "amount", Datatype: "INT32", Shape: []int64{2, 1}, Contents: &inference.InferTensorContents{IntContents: []int32{5, -6}}},
		{Name: "flag", Datatype: "BOOL", Shape: []int64{2}, Contents: &inference.InferTensorContents{BoolContents: []bool{true, false}}},
	}}
	ts, err := DecodeGRPC(ok)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ToRequest("m", 0, ts, map[string]bool{"amount": true, "flag": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Rows) != 2 || req.Rows[1].EntityKeys["user_id"] != "b" || req.Rows[1].Features["amount"].Num != -6 || req.Rows[0].Features["flag"].Num != 1 || !req.Batch {
		t.Errorf("request %+v", req)
	}
	contents := func(c *inference.InferTensorContents) *inference.ModelInferRequest {
		return &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "amount", Datatype: "FP32", Shape: []int64{2}, Contents: c}}}
	}
	for _, tc := range []struct {
		name string
		req  *inference.ModelInferRequest
		want string
	}{
		{"count mismatch", contents(&inference.InferTensorContents{Fp32Contents: []float32{1}}), "inputs[0] (amount): shape [2] holds 2 elements, contents have 1"},
		{"wrong contents field", contents(&inference.InferTensorContents{Fp64Contents: []float64{1, 2}}), "inputs[0] (amount).contents: datatype FP32 takes fp32_contents, got fp64_contents"},
		{"no contents", contents(nil), "inputs[0] (amount).contents: missing"},
		{"raw count", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP32", Shape: []int64{1}}}, RawInputContents: [][]byte{{1}, {2}}}, "raw_input_contents: 2 entries for 1 inputs"},
		{"raw size", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP32", Shape: []int64{2}}}, RawInputContents: [][]byte{{1, 2, 3}}}, "inputs[0] (a): raw contents are 3 bytes"},
		{"raw bytes truncated", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "k", Datatype: "BYTES", Shape: []int64{1}}}, RawInputContents: [][]byte{{9, 0, 0, 0, 'a'}}}, "inputs[0] (k): raw BYTES element of 9 bytes"},
		{"3-d shape", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP32", Shape: []int64{1, 1, 1}}}}, "inputs[0] (a).shape"},
		{"zero batch", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP32", Shape: []int64{0}}}}, "inputs[0] (a).shape: batch 0"},
		{"unnamed", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Datatype: "FP32", Shape: []int64{1}}}}, "inputs[0].name: required"},
	} {
		_, err := DecodeGRPC(tc.req)
		if core.KindOf(err) != core.KindInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument containing %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"batch mismatch", []Tensor{{Name: "a", Nums: []float64{1, 2}}, {Name: "k", Strs: []string{"x"}}}, "inputs[1] (k): batch of 1 rows, other inputs have 2"},
		{"numeric entity key", []Tensor{{Name: "user_id", Nums: []float64{1}}}, "inputs[0] (user_id): model \"m\" has no request-time input"},
		{"NaN", []Tensor{{Name: "a", Nums: []float64{math.NaN()}}}, "inputs[0] (a): element 0 is NaN"},
		{"duplicate", []Tensor{{Name: "a", Nums: []float64{1}}, {Name: "a", Nums: []float64{1}}}, "inputs[1] (a): duplicate"},
		{"none", nil, "inputs: need at least one"},
	} {
		_, err := ToRequest("m", 0, tc.tensors, map[string]bool{"a": true})
		if core.KindOf(err) != core.KindInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument containing %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeGRPC feeds arbitrary raw contents and shapes: decoding must
// either fail with InvalidArgument or give tensors whose sizes match their shapes.
func FuzzDecodeGRPC(f *testing.F) {
	f.Add("FP32", int64(2), int64(1), []byte{0, 0, 128, 63, 0, 0, 0, 64})
	f.Add("BYTES", int64(1), int64(1), []byte{2, 0, 0, 0, 'u', '1'})
	f.Add("BOOL", int64(3), int64(0), []byte{1, 0, 1})
	f.Add("INT64", int64(1), int64(1), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, dt string, d0, d1 int64, raw []byte) {
		shape := []int64{d0}
		if d1 != 0 {
			shape = append(shape, d1)
		}
		req := &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: dt, Shape: shape}},
			RawInputContents: [][]byte{raw}}
		ts, err := DecodeGRPC(req)
		if err != nil {
			if core.KindOf(err) != core.KindInvalidArgument {
				t.Fatalf("error of kind %v: %v", core.KindOf(err), err)
			}
			return
		}
		if ts[0].Len() != int(d0) {
			t.Fatalf("decoded %d elements for shape %v", ts[0].Len(), shape)
		}
		if _, err := ToRequest("m", 0, ts, map[string]bool{"x": true}); err != nil && core.KindOf(err) != core.KindInvalidArgument {
			t.Fatalf("ToRequest error of kind %v: %v", core.KindOf(err), err)
		}
	})
}
