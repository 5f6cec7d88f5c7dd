package modelservertest_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/proto/gen/go/inference"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/peertest"
	"github.com/tributary-ml/tributary/services/modelserver"
)

// weights of testdata/models/fraud_lr/2, the version served by default.
var v2 = struct{ count, sum, us, amount, bias float64 }{0.6, 0.1, -0.5, 0.7, -2.5}

// expectV2 is the logistic score of version 2 computed from the model's definition.
func expectV2(count, sum, us, amount float64) float64 {
	z := v2.bias + v2.count*(count-1.2)/0.8 + v2.sum*math.Log1p(sum) + v2.us*us + v2.amount*math.Log1p(amount)
	return 1 / (1 + math.Exp(-z))
}

type env struct {
	t     testing.TB
	svc   *modelserver.Service
	peer  *peertest.Features
	kafka string
	conn  *grpc.ClientConn
	dir   string
}

// copyRepo copies the test model repository into a temporary directory.
func copyRepo(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func start(t testing.TB, mod func(*modelserver.Config)) *env {
	t.Helper()
	return startRepo(t, "testdata/models", mod)
}

func startRepo(t testing.TB, repo string, mod func(*modelserver.Config)) *env {
	t.Helper()
	return startWithViews(t, repo, "", mod)
}

// startWithViews runs the modelserver on a copy of repo in front of a real
// featureserver (peertest) serving the feature views in views (the test
// views when empty); both share one embedded Kafka broker unless mod
// points the modelserver at another.
func startWithViews(t testing.TB, repo, views string, mod func(*modelserver.Config)) *env {
	t.Helper()
	return startEnv(t, repo, views, false, mod)
}

// startEnv is startWithViews; direct makes the modelserver dial the
// featureserver itself instead of the peer's Link (benchmarks: no extra hop).
func startEnv(t testing.TB, repo, views string, direct bool, mod func(*modelserver.Config)) *env {
	t.Helper()
	e := &env{t: t}
	e.dir = copyRepo(t, repo)
	cfg := modelserver.DefaultConfig()
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.GRPCAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "warn"
	cfg.Models = e.dir
	cfg.ModelsPollInterval = 0
	if mod != nil {
		mod(&cfg)
	}
	if cfg.Common.KafkaBrokers == modelserver.DefaultConfig().Common.KafkaBrokers {
		e.kafka = testutil.Kafka(t, 2)
		cfg.Common.KafkaBrokers = e.kafka
	}
	// A test that brings its own broker (to stop it) keeps the
	// featureserver off it.
	e.peer = peertest.StartFeatures(t, peertest.FeaturesOptions{Brokers: e.kafka, Views: views})
	cfg.FeatureserverAddr = e.peer.Addr()
	if direct {
		cfg.FeatureserverAddr = e.peer.ServerAddr()
	}
	svc, err := modelserver.New(context.Background(), cfg, modelserver.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	testutil.RunService(t, "modelserver", svc)
	e.conn, err = grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.conn.Close() })
	return e
}

func (e *env) serving() servingv1.PredictionServiceClient {
	return servingv1.NewPredictionServiceClient(e.conn)
}
func (e *env) oip() inference.GRPCInferenceServiceClient {
	return inference.NewGRPCInferenceServiceClient(e.conn)
}

func (e *env) seedU1() {
	e.peer.Set(e.t, "user_transactions:txn_count_10m", 3, "user_id", "u1")
	e.peer.Set(e.t, "user_transactions:txn_sum_1h", 250.5, "user_id", "u1")
	e.peer.Set(e.t, "user_profile:country", "US", "user_id", "u1")
	e.peer.Sync(e.t)
}

func amount(v float64) map[string]*featuresv1.Value {
	return map[string]*featuresv1.Value{"amount": double(v)}
}

func double(v float64) *featuresv1.Value {
	return &featuresv1.Value{Kind: &featuresv1.Value_DoubleValue{DoubleValue: v}}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// readPredictions reads n records from the predictions topic.
func readPredictions(t *testing.T, broker string, n int) ([]predlog.Prediction, []kafkago.Message) {
	t.Helper()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker}, GroupID: "test-" + t.Name(), Topic: predlog.PredictionsTopic,
		StartOffset: kafkago.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx := testutil.Context(t, 20*time.Second)
	var out []predlog.Prediction
	var msgs []kafkago.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read predictions: got %d of %d records: %v", len(out), n, err)
		}
		var p predlog.Prediction
		if err := json.Unmarshal(m.Value, &p); err != nil {
			t.Fatalf("prediction record %s: %v", m.Value, err)
		}
		out = append(out, p)
		msgs = append(msgs, m)
	}
	return out, msgs
}

func TestPredictFetchesFeaturesOnceAndLogs(t *testing.T) {
	e := start(t, nil)
	e.seedU1()
	ctx := testutil.Context(t, 10*time.Second)

	resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "u1"}, Features: amount(120)})
	if err != nil {
		t.Fatal(err)
	}
	want := expectV2(3, 250.5, 1, 120)
	if !near(resp.GetOutputs()["score"], want) {
		t.Errorf("score = %v, want %v", resp.GetOutputs()["score"], want)
	}
	if wantLabel := map[bool]float64{true: 1, false: 0}[want >= 0.5]; resp.GetOutputs()["label"] != wantLabel {
		t.Errorf("label = %v, want %v", resp.GetOutputs()["label"], wantLabel)
	}
	if resp.GetVersion() != "2" || resp.GetVariant() != "default" || resp.GetModel() != "fraud_lr" {
		t.Errorf("model/version/variant = %s/%s/%s, want fraud_lr/2/default", resp.GetModel(), resp.GetVersion(), resp.GetVariant())
	}
	if len(resp.GetDefaultedFeatures()) != 0 {
		t.Errorf("defaulted = %v, want none", resp.GetDefaultedFeatures())
	}
	if got := e.peer.Calls(t); got != 1 {
		t.Errorf("featureserver calls = %d, want 1", got)
	}
	if got, want := e.peer.Link().Reads(), []string{"user_profile|u1", "user_transactions|u1"}; !slices.Equal(got, want) {
		t.Errorf("featureserver read %v, want %v", got, want)
	}

	// An unknown entity and no request feature: every input takes its default.
	resp2, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "nobody"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"txn_count_10m", "txn_sum_1h", "country_us", "amount"}; !slices.Equal(resp2.GetDefaultedFeatures(), want) {
		t.Errorf("defaulted = %v, want %v", resp2.GetDefaultedFeatures(), want)
	}
	if want := expectV2(0, 0, 0, 0); !near(resp2.GetOutputs()["score"], want) {
		t.Errorf("score with defaults = %v, want %v", resp2.GetOutputs()["score"], want)
	}
	if got := e.peer.Calls(t); got != 2 {
		t.Errorf("featureserver calls = %d, want 2", got)
	}

	recs, msgs := readPredictions(t, e.kafka, 2)
	byID := map[string]predlog.Prediction{}
	for i, r := range recs {
		if string(msgs[i].Key) != r.PredictionID {
			t.Errorf("record key %q, prediction id %q", msgs[i].Key, r.PredictionID)
		}
		byID[r.PredictionID] = r
	}
	r1, ok := byID[resp.GetPredictionId()]
	if !ok {
		t.Fatalf("no log record for prediction %s in %v", resp.GetPredictionId(), recs)
	}
	if r1.Model != "fraud_lr" || r1.Version != "2" || r1.Variant != "default" || r1.Role != predlog.RoleServed {
		t.Errorf("record model/version/variant/role = %s/%s/%s/%s", r1.Model, r1.Version, r1.Variant, r1.Role)
	}
	if !near(r1.Score, want) || r1.Outputs["score"] != r1.Score {
		t.Errorf("record score %v outputs %v, want %v", r1.Score, r1.Outputs, want)
	}
	if r1.Features["amount"] != 120 || r1.Features["txn_count_10m"] != 3 || r1.Features["txn_sum_1h"] != 250.5 || r1.Features["country_us"] != 1 {
		t.Errorf("record features %v", r1.Features)
	}
	if r1.EntityKeys["user_id"] != "u1" || r1.TimeMs == 0 || r1.LatencyMs <= 0 {
		t.Errorf("record entity %v ts %d latency %v", r1.EntityKeys, r1.TimeMs, r1.LatencyMs)
	}
	r2 := byID[resp2.GetPredictionId()]
	if !slices.Equal(r2.Defaulted, resp2.GetDefaultedFeatures()) {
		t.Errorf("record defaulted %v, response %v", r2.Defaulted, resp2.GetDefaultedFeatures())
	}
}

func TestPredictBatchAndOpenInferenceAgree(t *testing.T) {
	e := start(t, nil)
	e.seedU1()
	e.peer.Set(t, "user_transactions:txn_count_10m", 7, "user_id", "u2")
	e.peer.Sync(t)
	ctx := testutil.Context(t, 10*time.Second)
	want := []float64{expectV2(3, 250.5, 1, 120), expectV2(7, 0, 0, 15.5)}

	batch, err := e.serving().PredictBatch(ctx, &servingv1.PredictBatchRequest{Model: "fraud_lr", Rows: []*servingv1.PredictBatchRequest_Row{
		{EntityKeys: map[string]string{"user_id": "u1"}, Features: amount(120)},
		{EntityKeys: map[string]string{"user_id": "u2"}, Features: amount(15.5)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	calls := e.peer.Calls(t)
	if calls != 1 {
		t.Errorf("PredictBatch made %d featureserver calls, want 1", calls)
	}
	for i, p := range batch.GetPredictions() {
		if !near(p.GetOutputs()["score"], want[i]) {
			t.Errorf("batch row %d score %v, want %v", i, p.GetOutputs()["score"], want[i])
		}
	}
	// u2 has transactions in the window but none summed: the featureserver
	// serves txn_sum_1h as a present 0; u2 has no profile.
	if d := batch.GetPredictions()[1].GetDefaultedFeatures(); !slices.Equal(d, []string{"country_us"}) {
		t.Errorf("row 1 defaulted %v", d)
	}

	// Open Inference Protocol over gRPC, typed contents.
	typed, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", Id: "req-1",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "user_id", Datatype: "BYTES", Shape: []int64{2}, Contents: &inference.InferTensorContents{BytesContents: [][]byte{[]byte("u1"), []byte("u2")}}},
			{Name: "amount", Datatype: "FP32", Shape: []int64{2, 1}, Contents: &inference.InferTensorContents{Fp32Contents: []float32{120, 15.5}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if typed.GetId() != "req-1" || typed.GetModelVersion() != "2" {
		t.Errorf("id %q version %q", typed.GetId(), typed.GetModelVersion())
	}
	var score *inference.ModelInferResponse_InferOutputTensor
	for _, o := range typed.GetOutputs() {
		if o.GetName() == "score" {
			score = o
		}
	}
	if score == nil || score.GetDatatype() != "FP64" || !slices.Equal(score.GetShape(), []int64{2, 1}) {
		t.Fatalf("score tensor %v", score)
	}
	for i, v := range score.GetContents().GetFp64Contents() {
		if !near(v, want[i]) {
			t.Errorf("ModelInfer row %d score %v, want %v", i, v, want[i])
		}
	}
	if ids := typed.GetParameters()["prediction_ids"].GetStringParam(); len(strings.Split(ids, ",")) != 2 {
		t.Errorf("prediction_ids parameter %q", ids)
	}

	// Raw contents, as Triton clients send them: BYTES as 4-byte length + bytes, FP64 little-endian.
	var users []byte
	for _, u := range []string{"u1", "u2"} {
		users = binary.LittleEndian.AppendUint32(users, uint32(len(u)))
		users = append(users, u...)
	}
	amounts := binary.LittleEndian.AppendUint64(nil, math.Float64bits(120))
	amounts = binary.LittleEndian.AppendUint64(amounts, math.Float64bits(15.5))
	raw, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", ModelVersion: "2",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "user_id", Datatype: "BYTES", Shape: []int64{2, 1}},
			{Name: "amount", Datatype: "FP64", Shape: []int64{2, 1}},
		},
		Outputs:          []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "score"}},
		RawInputContents: [][]byte{users, amounts}})
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.GetOutputs()) != 1 || len(raw.GetRawOutputContents()) != 1 || len(raw.GetRawOutputContents()[0]) != 16 {
		t.Fatalf("raw answer: outputs %v raw %d", raw.GetOutputs(), len(raw.GetRawOutputContents()))
	}
	for i := range 2 {
		v := math.Float64frombits(binary.LittleEndian.Uint64(raw.GetRawOutputContents()[0][i*8:]))
		if !near(v, want[i]) {
			t.Errorf("raw ModelInfer row %d score %v, want %v", i, v, want[i])
		}
	}

	// Open Inference Protocol REST, shaped as the specification's example.
	body := `{"id": "42", "inputs": [
	  {"name": "user_id", "shape": [2], "datatype": "BYTES", "data": ["u1", "u2"]},
	  {"name": "amount", "shape": [2, 1], "datatype": "FP32", "data": [[120], [15.5]]}],
	 "outputs": [{"name": "score"}]}`
	res, err := http.Post("http://"+e.svc.AdminAddr()+"/v2/models/fraud_lr/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var rest struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		ID           string `json:"id"`
		Outputs      []struct {
			Name     string    `json:"name"`
			Shape    []int64   `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&rest); err != nil || res.StatusCode != 200 {
		t.Fatalf("REST infer: %d %v", res.StatusCode, err)
	}
	if rest.ModelName != "fraud_lr" || rest.ID != "42" || len(rest.Outputs) != 1 || rest.Outputs[0].Datatype != "FP64" {
		t.Fatalf("REST answer %+v", rest)
	}
	for i, v := range rest.Outputs[0].Data {
		if !near(v, want[i]) {
			t.Errorf("REST row %d score %v, want %v", i, v, want[i])
		}
	}
	// 1 PredictBatch + 3 infers, one fetch each.
	if got := e.peer.Calls(t); got != 4 {
		t.Errorf("featureserver calls = %d, want 4 (one per request)", got)
	}
}

func TestOpenInferenceHealthAndMetadata(t *testing.T) {
	e := start(t, nil)
	ctx := testutil.Context(t, 10*time.Second)
	c := e.oip()
	if r, err := c.ServerLive(ctx, &inference.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Errorf("ServerLive %v %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &inference.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Errorf("ServerReady %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: "fraud_lr", Version: "2"}); err != nil || !r.GetReady() {
		t.Errorf("ModelReady fraud_lr/2 %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: "fraud_lr", Version: "1"}); err != nil || r.GetReady() {
		t.Errorf("ModelReady fraud_lr/1 (unloaded by the latest-1 policy) %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: "nope"}); err != nil || r.GetReady() {
		t.Errorf("ModelReady nope %v %v", r, err)
	}
	sm, err := c.ServerMetadata(ctx, &inference.ServerMetadataRequest{})
	if err != nil || sm.GetName() == "" || sm.GetVersion() == "" {
		t.Errorf("ServerMetadata %v %v", sm, err)
	}
	md, err := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "fraud_lr"})
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, t := range md.GetInputs() {
		in = append(in, t.GetName()+":"+t.GetDatatype())
	}
	if !slices.Equal(in, []string{"user_id:BYTES", "amount:FP64"}) || !slices.Equal(md.GetVersions(), []string{"2"}) {
		t.Errorf("ModelMetadata inputs %v versions %v", in, md.GetVersions())
	}
	if len(md.GetOutputs()) != 2 || md.GetOutputs()[0].GetName() != "score" {
		t.Errorf("ModelMetadata outputs %v", md.GetOutputs())
	}
	if _, err := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelMetadata unknown model: %v, want NotFound", err)
	}

	base := "http://" + e.svc.AdminAddr()
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/v2/health/live", 200, `"live":true`},
		{"/v2/health/ready", 200, `"ready":true`},
		{"/v2", 200, `"name":"tributary-modelserver"`},
		{"/v2/models/fraud_lr", 200, `"versions":["2"]`},
		{"/v2/models/fraud_lr/versions/2", 200, `"platform":"tributary_logistic"`},
		{"/v2/models/fraud_lr/ready", 200, `"ready":true`},
		{"/v2/models/fraud_lr/versions/1/ready", 404, `no loaded version 1`},
		{"/v2/models/nope", 404, `is not in the repository`},
		{"/v2/models/nope/ready", 404, `"error"`},
	} {
		res, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code || !strings.Contains(string(b), tc.body) {
			t.Errorf("GET %s = %d %s, want %d containing %s", tc.path, res.StatusCode, b, tc.code, tc.body)
		}
	}
}

func TestBadRequestsGetTheRightCodes(t *testing.T) {
	e := start(t, nil)
	ctx := testutil.Context(t, 10*time.Second)
	user := map[string]string{"user_id": "u1"}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown model", func() error {
			_, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "nope", EntityKeys: user})
			return err
		}, codes.NotFound, `model "nope"`},
		{"no model name", func() error {
			_, err := e.serving().Predict(ctx, &servingv1.PredictRequest{EntityKeys: user})
			return err
		}, codes.InvalidArgument, "model: required"},
		{"missing entity key", func() error {
			_, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"account": "a"}})
			return err
		}, codes.InvalidArgument, "entity_keys.user_id: missing"},
		{"missing entity key in a batch row", func() error {
			_, err := e.serving().PredictBatch(ctx, &servingv1.PredictBatchRequest{Model: "fraud_lr", Rows: []*servingv1.PredictBatchRequest_Row{{EntityKeys: user}, {}}})
			return err
		}, codes.InvalidArgument, "rows[1].entity_keys.user_id"},
		{"string for a numeric input", func() error {
			_, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: user,
				Features: map[string]*featuresv1.Value{"amount": {Kind: &featuresv1.Value_StringValue{StringValue: "lots"}}}})
			return err
		}, codes.InvalidArgument, "features.amount"},
		{"unknown version pinned", func() error {
			_, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", ModelVersion: "9"})
			return err
		}, codes.NotFound, "no loaded version 9"},
		{"wrong shape", func() error {
			_, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", Inputs: []*inference.ModelInferRequest_InferInputTensor{
				{Name: "amount", Datatype: "FP64", Shape: []int64{1, 2}, Contents: &inference.InferTensorContents{Fp64Contents: []float64{1, 2}}}}})
			return err
		}, codes.InvalidArgument, "inputs[0] (amount).shape"},
		{"contents do not match the datatype", func() error {
			_, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", Inputs: []*inference.ModelInferRequest_InferInputTensor{
				{Name: "amount", Datatype: "FP32", Shape: []int64{1}, Contents: &inference.InferTensorContents{Fp64Contents: []float64{1}}}}})
			return err
		}, codes.InvalidArgument, "inputs[0] (amount)"},
		{"unknown datatype", func() error {
			_, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", Inputs: []*inference.ModelInferRequest_InferInputTensor{
				{Name: "amount", Datatype: "COMPLEX", Shape: []int64{1}}}})
			return err
		}, codes.InvalidArgument, "inputs[0] (amount).datatype"},
		{"numeric tensor that is no input", func() error {
			_, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", Inputs: []*inference.ModelInferRequest_InferInputTensor{
				{Name: "user_id", Datatype: "INT64", Shape: []int64{1}, Contents: &inference.InferTensorContents{Int64Contents: []int64{1}}}}})
			return err
		}, codes.InvalidArgument, "inputs[0] (user_id)"},
		{"unknown output", func() error {
			_, err := e.oip().ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "fraud_lr", Inputs: []*inference.ModelInferRequest_InferInputTensor{
				{Name: "user_id", Datatype: "BYTES", Shape: []int64{1}, Contents: &inference.InferTensorContents{BytesContents: [][]byte{[]byte("u1")}}}},
				Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "probability"}}})
			return err
		}, codes.InvalidArgument, "outputs[0] (probability)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("got %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
	res, err := http.Post("http://"+e.svc.AdminAddr()+"/v2/models/fraud_lr/infer", "application/json",
		strings.NewReader(`{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": ["x"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !strings.Contains(string(b), "inputs[0] (amount).data[0]") {
		t.Errorf("REST bad datatype: %d %s", res.StatusCode, b)
	}
}

func TestSlowFeatureServerTakesDefaults(t *testing.T) {
	e := start(t, nil)
	e.seedU1()
	e.peer.Link().Hold() // reads wait far beyond the model's 50ms feature timeout
	ctx := testutil.Context(t, 10*time.Second)
	began := time.Now()
	resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "u1"}, Features: amount(120)})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Predict took %s; the feature fetch deadline is 50ms", took)
	}
	if want := []string{"txn_count_10m", "txn_sum_1h", "country_us"}; !slices.Equal(resp.GetDefaultedFeatures(), want) {
		t.Errorf("defaulted %v, want %v", resp.GetDefaultedFeatures(), want)
	}
	if want := expectV2(0, 0, 0, 120); !near(resp.GetOutputs()["score"], want) {
		t.Errorf("score %v, want %v", resp.GetOutputs()["score"], want)
	}
	// A caller deadline shorter than the fetch is DeadlineExceeded.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = e.serving().Predict(short, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "u1"}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("short deadline: %v, want DeadlineExceeded", err)
	}
}

// metricValue sums the samples of a Prometheus counter on the admin port.
func metricValue(t *testing.T, admin, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	re := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

func TestKafkaDownPredictionsStillServedAndDropsCounted(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close() // nothing listens there now
	e := start(t, func(c *modelserver.Config) {
		c.Common.KafkaBrokers = dead
		c.PredictionLogBuffer = 2
	})
	ctx := testutil.Context(t, 10*time.Second)
	const n = 20
	for i := range n {
		if _, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": fmt.Sprint("u", i)}}); err != nil {
			t.Fatalf("prediction %d with Kafka down: %v", i, err)
		}
	}
	if got := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_predictions_total"); got != n {
		t.Errorf("tributary_modelserver_predictions_total = %v, want %d", got, n)
	}
	// At most the buffer (2) plus one batch in flight can still be waiting; the rest are dropped.
	testutil.Eventually(t, 5*time.Second, "dropped prediction log records counted", func() error {
		if got := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_prediction_log_dropped_total"); got < n-3 {
			return fmt.Errorf("tributary_modelserver_prediction_log_dropped_total = %v, want ≥ %d", got, n-3)
		}
		return nil
	})
}

func TestInvalidConfigNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*modelserver.Config)
		want string
	}{
		{"no models dir", func(c *modelserver.Config) { c.Models = "" }, "models:"},
		{"models dir missing", func(c *modelserver.Config) { c.Models = filepath.Join(t.TempDir(), "absent") }, "models:"},
		{"bad featureserver addr", func(c *modelserver.Config) { c.FeatureserverAddr = "nocolon" }, "featureserver-addr:"},
		{"zero concurrency", func(c *modelserver.Config) { c.MaxConcurrent = 0 }, "max-concurrent-requests:"},
		{"zero log buffer", func(c *modelserver.Config) { c.PredictionLogBuffer = 0 }, "prediction-log-buffer:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := modelserver.DefaultConfig()
			cfg.Common.AdminAddr, cfg.Common.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Models = "testdata/models"
			tc.mod(&cfg)
			_, err := modelserver.New(context.Background(), cfg, modelserver.Deps{})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error starting with %q", err, tc.want)
			}
		})
	}
}
