// Package train trains the fraud example's logistic-regression model from
// a real training set of demo data: the simulated history is archived as
// the real system would archive it, and the features are computed from
// that archive by the offline service's point-in-time engine (the
// featurizer's and featureserver's own code). It writes the model to a model
// repository in the modelserver's format (config.yaml, <version>/model.json,
// <version>/baseline.json with the training distributions for drift).
package train

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/demo"
	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/tiles/served"
	"github.com/tributary-ml/tributary/services/offline"
)

// ModelName is the example model's name in the repository.
const ModelName = "fraud_lr"

// Options controls training.
type Options struct {
	Seed     uint64
	Users    int
	Sessions int
	// SessionsPerSecond is the arrival rate, as in the live demo workload.
	SessionsPerSecond float64
	// Start is when the simulated history begins.
	Start time.Time
	// Epochs of full-batch gradient descent.
	Epochs int
}

// DefaultOptions are what the committed example model was trained with.
func DefaultOptions() Options {
	return Options{Seed: 42, Users: demo.DefaultUsers, SessionsPerSecond: demo.DefaultSessionsPerSecond, Sessions: 72000,
		Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Epochs: 400}
}

// input is one model input: a feature from the featureserver or the request.
type input struct {
	Name    string
	Feature string // view:feature, or "" for a request-time input
}

// Inputs of the example model, in order.
var inputs = []input{
	{"txn_count_10m", "user_transactions:txn_count_10m"},
	{"txn_sum_10m", "user_transactions:txn_sum_10m"},
	{"txn_count_1h", "user_transactions:txn_count_1h"},
	{"txn_avg_24h", "user_transactions:txn_avg_24h"},
	{"txn_max_24h", "user_transactions:txn_max_24h"},
	{"click_count_10m", "user_clicks:click_count_10m"},
	{"amount", ""},
}

// Result summarises a training run.
type Result struct {
	Rows      int
	FraudRate float64
	AUC       float64
	LogLoss   float64
}

// Run trains on demo data and writes version 1 of the model into
// repo/fraud_lr, reading feature definitions from featuresDir.
func Run(featuresDir, repo string, opt Options, progress io.Writer) (Result, error) {
	views, err := featurespec.LoadDir(featuresDir)
	if err != nil {
		return Result{}, err
	}
	feats := map[string]featurespec.Feature{}
	for _, v := range views {
		for _, f := range v.Features {
			feats[v.Ref(f)] = f
		}
	}
	for _, in := range inputs {
		if _, ok := feats[in.Feature]; in.Feature != "" && !ok {
			return Result{}, fmt.Errorf("input %s: feature %s is not declared in %s", in.Name, in.Feature, featuresDir)
		}
	}
	x, y, err := dataset(context.Background(), opt, views)
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(progress, "training set: %d transactions, %.1f%% fraud\n", len(y), 100*mean(y))

	// Hold out the last fifth (in time) to report quality.
	split := len(y) * 4 / 5
	mu, sd := standardizer(x[:split])
	w, b := fit(x[:split], y[:split], mu, sd, opt.Epochs)
	// The repository stores rounded parameters; score with exactly those so
	// the baseline's score distribution is the served model's.
	for j := range w {
		w[j], mu[j], sd[j] = round6(w[j]), round6(mu[j]), round6(sd[j])
	}
	b = round6(b)
	scores := make([]float64, len(y))
	for i := range x {
		scores[i] = predict(x[i], w, b, mu, sd)
	}
	res := Result{Rows: len(y), FraudRate: mean(y), AUC: auc(scores[split:], y[split:]), LogLoss: logLoss(scores[split:], y[split:])}
	fmt.Fprintf(progress, "holdout: AUC %.3f, log loss %.4f\n", res.AUC, res.LogLoss)
	return res, write(filepath.Join(repo, ModelName), x[:split], scores[:split], w, b, mu, sd)
}

// dataset simulates the history, archives it as the real system would
// (see history), and computes the training set from that archive with the
// point-in-time engine: for every transaction, the features as the
// featureserver served them just before the transaction was recorded
// (1 ms before), and whether it was fraud.
func dataset(ctx context.Context, opt Options, views []*featurespec.View) ([][]float64, []float64, error) {
	msgs, txns := history(opt)
	dir, err := os.MkdirTemp("", "tributary-train-archive-")
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	url := "file://" + filepath.ToSlash(dir)
	if err := offline.WriteArchive(ctx, url, views, msgs); err != nil {
		return nil, nil, err
	}
	hist, closeHist, err := offline.OpenArchiveHistory(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = closeHist() }()
	var refs []string
	for _, in := range inputs {
		if in.Feature != "" {
			refs = append(refs, in.Feature)
		}
	}
	set, err := offline.ComputeTrainingSet(ctx, offline.TrainingSetRequest{Views: views, Refs: refs, Spine: txnSpine(txns), History: hist})
	if err != nil {
		return nil, nil, fmt.Errorf("training set: %w", err)
	}
	// The simulated history is clean: every record must count.
	if st := set.Stats; st.Records != int64(len(msgs)) || st.Invalid+st.Late+st.Duplicates != 0 {
		return nil, nil, fmt.Errorf("training set: %d of %d archived records read, %d invalid, %d late, %d duplicates: the simulated history is not archived as the featurizer reads it",
			st.Records, len(msgs), st.Invalid, st.Late, st.Duplicates)
	}
	x := make([][]float64, len(txns))
	y := make([]float64, len(txns))
	for k, i := range set.Rows {
		vals := set.Row(k)
		row := make([]float64, len(inputs))
		f := 0
		for j, in := range inputs {
			if in.Feature == "" {
				row[j] = txns[i].Amount
				continue
			}
			row[j] = number(vals[f])
			f++
		}
		x[i], y[i] = row, txns[i].Label()
	}
	return x, y, nil
}

// number is a served value as the model reads it: a value the server
// reports as not found or stale takes the model's default, 0.
func number(v served.Value) float64 {
	if v.Status != served.StatusPresent {
		return 0
	}
	switch v.Kind {
	case served.KindDouble:
		return v.Double
	case served.KindInt64:
		return float64(v.Int)
	}
	return 0
}

// history simulates the demo and returns the records the real system
// would have archived, with the simulated event time as each record's
// arrival (Kafka record time): clicks on events.clicks as the demo
// workload sends them, and every transaction as ingest's Debezium change
// event on cdc.public.transactions (an INSERT into the example schema,
// txn_id from 1 in time order). It also returns the transactions in
// time order, the training set's spine.
func history(opt Options) ([]kafka.Message, []demo.Txn) {
	g := demo.NewGen(opt.Seed, opt.Users)
	var clicks []demo.Click
	var txns []demo.Txn
	t := opt.Start
	for range opt.Sessions {
		t = t.Add(g.Gap(opt.SessionsPerSecond))
		s := g.Session(t)
		clicks = append(clicks, s.Clicks...)
		txns = append(txns, s.Txns...)
	}
	slices.SortStableFunc(clicks, func(a, b demo.Click) int { return a.Time.Compare(b.Time) })
	slices.SortStableFunc(txns, func(a, b demo.Txn) int { return a.Time.Compare(b.Time) })
	msgs := make([]kafka.Message, 0, len(clicks)+len(txns))
	for i, c := range clicks {
		m := demo.ClickMessage(c, c.Time)
		m.Offset, m.Time = int64(i), c.Time
		msgs = append(msgs, m)
	}
	topic := cdc.Topic("public", "transactions")
	for i, tx := range txns {
		id := int64(i + 1)
		lsn := uint64(0x1000000 + 0x100*id) // one transaction per INSERT
		ms := tx.Time.UnixMilli()
		env := cdc.Envelope{
			After: map[string]any{"txn_id": id, "user_id": tx.UserID, "merchant_id": tx.Merchant,
				"amount": strconv.FormatFloat(tx.Amount, 'f', 2, 64), "currency": "USD",
				"created_at": tx.Time.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.999999Z")},
			Source: cdc.Source{Version: "demo", Connector: "postgresql", Name: "tributary", TsMs: ms, Snapshot: "false",
				DB: "tributary", Sequence: cdc.Position{CommitLSN: lsn + 0x30, LSN: lsn}.SequenceString(), Schema: "public",
				Table: "transactions", TxID: 1000 + id, LSN: int64(lsn)},
			Op: cdc.OpCreate, TsMs: ms,
		}
		v, _ := json.Marshal(env)
		k, _ := json.Marshal(map[string]int64{"txn_id": id})
		msgs = append(msgs, kafka.Message{Topic: topic, Offset: int64(i), Key: k, Value: v, Time: tx.Time})
	}
	return msgs, txns
}

// txnSpine is the training set's spine: one row per transaction, keyed by
// its user, at 1 ms before it was recorded.
type txnSpine []demo.Txn

func (s txnSpine) Len() int            { return len(s) }
func (s txnSpine) EventMs(i int) int64 { return s[i].Time.UnixMilli() - 1 }
func (s txnSpine) JoinKey(i int, key string) (string, bool) {
	if key != "user_id" {
		return "", false
	}
	return s[i].UserID, true
}

func standardizer(x [][]float64) (mu, sd []float64) {
	n := float64(len(x))
	mu, sd = make([]float64, len(inputs)), make([]float64, len(inputs))
	for _, r := range x {
		for j, v := range r {
			mu[j] += v / n
		}
	}
	for _, r := range x {
		for j, v := range r {
			sd[j] += (v - mu[j]) * (v - mu[j]) / n
		}
	}
	for j := range sd {
		sd[j] = math.Sqrt(sd[j])
		if sd[j] == 0 {
			sd[j] = 1
		}
	}
	return mu, sd
}

func predict(r, w []float64, b float64, mu, sd []float64) float64 {
	z := b
	for j, v := range r {
		z += w[j] * (v - mu[j]) / sd[j]
	}
	return 1 / (1 + math.Exp(-z))
}

// fit is full-batch gradient descent on the log loss with a small L2 penalty.
func fit(x [][]float64, y []float64, mu, sd []float64, epochs int) ([]float64, float64) {
	const lr, l2 = 0.5, 1e-4
	w := make([]float64, len(inputs))
	b := 0.0
	n := float64(len(y))
	grad := make([]float64, len(w))
	for range epochs {
		clear(grad)
		gb := 0.0
		for i, r := range x {
			e := predict(r, w, b, mu, sd) - y[i]
			for j, v := range r {
				grad[j] += e * (v - mu[j]) / sd[j]
			}
			gb += e
		}
		for j := range w {
			w[j] -= lr * (grad[j]/n + l2*w[j])
		}
		b -= lr * gb / n
	}
	return w, b
}

// auc is the probability that a random positive scores above a random negative.
func auc(s, y []float64) float64 {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(s[a], s[b]) })
	var pos, neg, rankSum float64
	for rank, i := range idx {
		if y[i] == 1 {
			pos++
			rankSum += float64(rank + 1)
		} else {
			neg++
		}
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

func logLoss(s, y []float64) float64 {
	var l float64
	for i := range s {
		p := min(max(s[i], 1e-12), 1-1e-12)
		l -= y[i]*math.Log(p) + (1-y[i])*math.Log(1-p)
	}
	return l / float64(len(s))
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// histogram is a training distribution: n+1 edges, n fractions.
type histogram struct {
	Edges     []float64 `json:"edges"`
	Fractions []float64 `json:"fractions"`
}

func histogramOf(v []float64, edges []float64) histogram {
	h := histogram{Edges: edges, Fractions: make([]float64, len(edges)-1)}
	for _, x := range v {
		i, _ := slices.BinarySearch(edges, x)
		i = min(max(i-1, 0), len(h.Fractions)-1)
		h.Fractions[i]++
	}
	for i := range h.Fractions {
		h.Fractions[i] = round6(h.Fractions[i] / float64(len(v)))
	}
	return h
}

// decileEdges are the distinct deciles of v, widened to cover its range.
func decileEdges(v []float64) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	var edges []float64
	for q := 0; q <= 10; q++ {
		e := round6(s[min(len(s)-1, q*(len(s)-1)/10)])
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	if len(edges) == 1 {
		edges = append(edges, edges[0]+1)
	}
	return edges
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

func write(dir string, x [][]float64, scores []float64, w []float64, b float64, mu, sd []float64) error {
	if err := os.MkdirAll(filepath.Join(dir, "1"), 0o755); err != nil {
		return err
	}
	cfg := "# Generated by `tributary train` from the demo data; do not edit by hand.\n" +
		"# Regenerate: go run ./cmd/tributary train\n" +
		"name: " + ModelName + "\nformat: logistic\ninputs:\n"
	for j, in := range inputs {
		cfg += "  - name: " + in.Name + "\n"
		if in.Feature != "" {
			cfg += "    feature: " + in.Feature + "\n"
		} else {
			cfg += "    source: request\n"
		}
		cfg += fmt.Sprintf("    default: 0\n    transform: {type: standardize, mean: %g, std: %g}\n", mu[j], sd[j])
	}
	cfg += "outputs: [score]\nthreshold: 0.5\n"
	weights := map[string]float64{}
	for j, in := range inputs {
		weights[in.Name] = w[j]
	}
	model := map[string]any{"weights": weights, "bias": b}
	base := map[string]any{}
	featHist := map[string]histogram{}
	for j, in := range inputs {
		col := make([]float64, len(x))
		for i := range x {
			col[i] = x[i][j]
		}
		featHist[in.Name] = histogramOf(col, decileEdges(col))
	}
	scoreEdges := make([]float64, 11)
	for i := range scoreEdges {
		scoreEdges[i] = float64(i) / 10
	}
	base["features"] = featHist
	base["score"] = histogramOf(scores, scoreEdges)
	files := map[string]any{"1/model.json": model, "1/baseline.json": base}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
