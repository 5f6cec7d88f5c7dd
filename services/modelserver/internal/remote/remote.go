// Package remote is the "remote" model format: a scorer that forwards the
// feature vectors over the Open Inference Protocol v2 (gRPC or REST) to
// Triton, KServe or another modelserver and reads the score back.
package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/proto/gen/go/inference"

	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

var _ model.Scorer = (*Scorer)(nil)

// DefaultTimeout bounds a remote call when the config names none.
const DefaultTimeout = time.Second

// Scorer forwards to a remote Open Inference Protocol server. With
// remote.input set it sends one FP32 tensor [batch, inputs] of that name (the
// shape Triton and KServe tabular models take); otherwise one FP64 tensor
// [batch, 1] per input, named by input (the shape another Tributary
// modelserver takes for request-time inputs).
type Scorer struct {
	cfg    model.Remote
	inputs []string
	conn   *grpc.ClientConn
	client inference.GRPCInferenceServiceClient
	http   *http.Client
}

// Load is the model.Loader of the remote format. The version directory may
// be empty: the artifact lives on the remote server.
func Load(cfg *model.Config, _ string) (model.Scorer, error) {
	s := &Scorer{cfg: *cfg.Remote}
	if s.cfg.Model == "" {
		s.cfg.Model = cfg.Name
	}
	if s.cfg.Output == "" {
		s.cfg.Output = model.OutputScore
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = model.Duration(DefaultTimeout)
	}
	for _, in := range cfg.Inputs {
		s.inputs = append(s.inputs, in.Name)
	}
	switch s.cfg.Protocol {
	case "", "grpc":
		conn, err := grpc.NewClient(s.cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("remote.addr: %w", err)
		}
		s.conn, s.client = conn, inference.NewGRPCInferenceServiceClient(conn)
	case "rest":
		s.http = &http.Client{}
		s.cfg.Addr = strings.TrimRight(s.cfg.Addr, "/")
		if !strings.HasPrefix(s.cfg.Addr, "http://") && !strings.HasPrefix(s.cfg.Addr, "https://") {
			s.cfg.Addr = "http://" + s.cfg.Addr
		}
	}
	return s, nil
}

// Close closes the gRPC connection.
func (s *Scorer) Close() error {
	if s.conn != nil {
		return s.conn.Close()
	}
	return nil
}

// Score implements model.Scorer.
func (s *Scorer) Score(ctx context.Context, x []float64, width int, out []float64) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.cfg.Timeout))
	defer cancel()
	if s.client != nil {
		return s.scoreGRPC(ctx, x, width, out)
	}
	return s.scoreREST(ctx, x, width, out)
}

func (s *Scorer) scoreGRPC(ctx context.Context, x []float64, width int, out []float64) error {
	n := int64(len(out))
	req := &inference.ModelInferRequest{ModelName: s.cfg.Model, ModelVersion: s.cfg.Version,
		Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: s.cfg.Output}}}
	if s.cfg.Input != "" {
		f := make([]float32, len(x))
		for i, v := range x {
			f[i] = float32(v)
		}
		req.Inputs = []*inference.ModelInferRequest_InferInputTensor{{Name: s.cfg.Input, Datatype: "FP32", Shape: []int64{n, int64(width)},
			Contents: &inference.InferTensorContents{Fp32Contents: f}}}
	} else {
		for i, name := range s.inputs {
			col := make([]float64, n)
			for r := range col {
				col[r] = x[r*width+i]
			}
			req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{Name: name, Datatype: "FP64", Shape: []int64{n, 1},
				Contents: &inference.InferTensorContents{Fp64Contents: col}})
		}
	}
	resp, err := s.client.ModelInfer(ctx, req)
	if err != nil {
		return fmt.Errorf("remote %s model %s: %w", s.cfg.Addr, s.cfg.Model, err)
	}
	for i, t := range resp.GetOutputs() {
		if t.GetName() != s.cfg.Output {
			continue
		}
		var vals []float64
		switch {
		case i < len(resp.GetRawOutputContents()):
			vals, err = rawFloats(t.GetDatatype(), resp.GetRawOutputContents()[i])
			if err != nil {
				return fmt.Errorf("remote %s output %s: %w", s.cfg.Addr, s.cfg.Output, err)
			}
		case len(t.GetContents().GetFp64Contents()) > 0:
			vals = t.GetContents().GetFp64Contents()
		default:
			for _, v := range t.GetContents().GetFp32Contents() {
				vals = append(vals, float64(v))
			}
		}
		return fill(out, vals, s.cfg.Addr, s.cfg.Output)
	}
	return fmt.Errorf("remote %s model %s: no output tensor %q in the answer", s.cfg.Addr, s.cfg.Model, s.cfg.Output)
}

func rawFloats(dt string, b []byte) ([]float64, error) {
	switch dt {
	case "FP64":
		if len(b)%8 != 0 {
			return nil, fmt.Errorf("raw FP64 of %d bytes", len(b))
		}
		out := make([]float64, len(b)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[i*8:]))
		}
		return out, nil
	case "FP32":
		if len(b)%4 != 0 {
			return nil, fmt.Errorf("raw FP32 of %d bytes", len(b))
		}
		out := make([]float64, len(b)/4)
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i*4:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("datatype %s is not FP32 or FP64", dt)
}

func fill(out, vals []float64, addr, name string) error {
	// A [batch, 2] probability output (class 0, class 1) gives the score as column 1.
	if len(vals) == 2*len(out) {
		for i := range out {
			out[i] = vals[2*i+1]
		}
		return nil
	}
	if len(vals) != len(out) {
		return fmt.Errorf("remote %s output %s: %d values for %d rows", addr, name, len(vals), len(out))
	}
	copy(out, vals)
	return nil
}

type restTensor struct {
	Name     string    `json:"name"`
	Shape    []int64   `json:"shape"`
	Datatype string    `json:"datatype"`
	Data     []float64 `json:"data"`
}

func (s *Scorer) scoreREST(ctx context.Context, x []float64, width int, out []float64) error {
	n := int64(len(out))
	body := struct {
		Inputs  []restTensor        `json:"inputs"`
		Outputs []map[string]string `json:"outputs"`
	}{Outputs: []map[string]string{{"name": s.cfg.Output}}}
	if s.cfg.Input != "" {
		body.Inputs = []restTensor{{Name: s.cfg.Input, Shape: []int64{n, int64(width)}, Datatype: "FP32", Data: x}}
	} else {
		for i, name := range s.inputs {
			col := make([]float64, n)
			for r := range col {
				col[r] = x[r*width+i]
			}
			body.Inputs = append(body.Inputs, restTensor{Name: name, Shape: []int64{n, 1}, Datatype: "FP64", Data: col})
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	url := s.cfg.Addr + "/v2/models/" + s.cfg.Model
	if s.cfg.Version != "" {
		url += "/versions/" + s.cfg.Version
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/infer", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("remote %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("remote %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("remote %s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	var ans struct {
		Outputs []restTensor `json:"outputs"`
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return fmt.Errorf("remote %s: answer: %w", url, err)
	}
	for _, t := range ans.Outputs {
		if t.Name == s.cfg.Output {
			return fill(out, t.Data, url, s.cfg.Output)
		}
	}
	return fmt.Errorf("remote %s: no output tensor %q in the answer", url, s.cfg.Output)
}
