package oiprest

import (
	"strings"
	"testing"

	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
)

func TestDecodeInferAsTheSpecificationShowsIt(t *testing.T) {
	t.Parallel()
	// The request example of the Open Inference Protocol's REST section, with our tensor names.
	body := `{
	  "id" : "42",
	  "inputs" : [
	    {"name" : "user_id", "shape" : [ 2 ], "datatype" : "BYTES", "data" : [ "u1", "u2" ]},
	    {"name" : "amount", "shape" : [ 2, 1 ], "datatype" : "FP32", "data" : [ [ 1.5 ], [ 2 ] ]},
	    {"name" : "flag", "shape" : [ 2 ], "datatype" : "BOOL", "data" : [ true, false ]}
	  ],
	  "outputs" : [ {"name" : "score"} ]
	}`
	req, ts, err := DecodeInfer([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "42" || len(ts) != 3 || ts[0].Strs[1] != "u2" || ts[1].Nums[0] != 1.5 || ts[2].Nums[0] != 1 || req.Outputs[0].Name != "score" {
		t.Errorf("decoded %+v %+v", req, ts)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}]}`, "inputs[0] (a): shape [2] holds 2 elements, data has 1"},
		{`{"inputs": [{"name": "a", "shape": [1], "datatype": "INT64", "data": [1.5]}]}`, "inputs[0] (a).data[0]: 1.5 is not an integer"},
		{`{"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": [1]}]}`, "inputs[0] (a).data[0]: BYTES elements are strings"},
		{`{"inputs": [{"name": "a", "shape": [1], "datatype": "BOOL", "data": ["true"]}]}`, "inputs[0] (a).data[0]: BOOL"},
		{`{"inputs": [{"name": "a", "shape": [1], "datatype": "FP128", "data": [1]}]}`, "inputs[0] (a).datatype"},
		{`{"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}`, "inputs[0] (a).shape"},
		{`{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": 1}]}`, "inputs[0] (a).data: must be an array"},
		{`{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}`, "inputs[0] (a).data: missing"},
		{`{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}`, "inputs[0].name: required"},
		{`[1, 2]`, "body: not an inference request"},
	} {
		_, _, err := DecodeInfer([]byte(tc.body))
		if core.KindOf(err) != core.KindInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument containing %q", tc.body, err, tc.want)
		}
	}
}

func FuzzDecodeInfer(f *testing.F) {
	f.Add([]byte(`{"id": "1", "inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u1"]}, {"name": "amount", "shape": [1, 1], "datatype": "FP64", "data": [[3]]}]}`))
	f.Add([]byte(`{"inputs": [{"name": "a", "shape": [2], "datatype": "BOOL", "data": [true, false]}]}`))
	f.Add([]byte(`{"inputs": [{"name": "a", "shape": [1], "datatype": "INT8", "data": [[[1]]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, ts, err := DecodeInfer(body)
		if err != nil {
			if core.KindOf(err) != core.KindInvalidArgument {
				t.Fatalf("error of kind %v: %v", core.KindOf(err), err)
			}
			return
		}
		for _, x := range ts {
			if x.Len() != int(x.Shape[0]) {
				t.Fatalf("tensor %s has %d elements for shape %v", x.Name, x.Len(), x.Shape)
			}
		}
	})
}
