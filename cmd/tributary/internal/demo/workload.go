package demo

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"
)

// ClicksTopic carries the demo's click events.
const ClicksTopic = "events.clicks"

// Model is the model the workload calls.
const Model = "fraud_lr"

// WorkloadConfig configures the demo workload.
type WorkloadConfig struct {
	// PostgresDSN receives users and transactions; empty skips them (no CDC).
	PostgresDSN       string
	Brokers           []string
	ModelserverAddr   string
	FeatureserverAddr string
	// SessionsPerSecond is the arrival rate of user sessions.
	SessionsPerSecond float64
	Users             int
	Seed              uint64
	// LabelDelay is how long after a prediction its label arrives.
	LabelDelay time.Duration
	Log        *slog.Logger
}

// Stats are the workload's live counters.
type Stats struct {
	Events      atomic.Int64 // transactions and clicks written
	Predictions atomic.Int64
	Errors      atomic.Int64
	Labels      atomic.Int64

	mu        sync.Mutex
	latencies []time.Duration // since the last Snapshot
	freshness time.Duration   // last probe
}

// Snapshot returns the p99 predict latency since the last call and the last
// measured freshness, and starts a new latency interval.
func (s *Stats) Snapshot() (p99, freshness time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.latencies); n > 0 {
		slices.Sort(s.latencies)
		p99 = s.latencies[min(n-1, n*99/100)]
	}
	s.latencies = s.latencies[:0]
	return p99, s.freshness
}

func (s *Stats) observe(d time.Duration) {
	s.mu.Lock()
	s.latencies = append(s.latencies, d)
	s.mu.Unlock()
}

// Workload plays demo sessions in real time: clicks to events.clicks,
// a Predict call then an INSERT for every transaction, labels later.
type Workload struct {
	cfg      WorkloadConfig
	Stats    Stats
	gen      *Gen
	probing  atomic.Bool
	probes   sync.WaitGroup
	features featuresv1.FeatureServiceClient
}

// NewWorkload builds a workload.
func NewWorkload(cfg WorkloadConfig) *Workload {
	if cfg.SessionsPerSecond == 0 {
		cfg.SessionsPerSecond = DefaultSessionsPerSecond
	}
	if cfg.Users == 0 {
		cfg.Users = DefaultUsers
	}
	if cfg.LabelDelay == 0 {
		cfg.LabelDelay = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Workload{cfg: cfg, gen: NewGen(cfg.Seed, cfg.Users)}
}

type due struct {
	at    time.Time
	click *Click
	txn   *Txn
	label *label
}

// label is the outcome of a scored transaction, known some time later.
type label struct {
	predlog.Label
	txnID    int64
	user     string
	merchant string
}

type queue []due

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(due)) }
func (q *queue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// Run plays the workload until ctx ends.
func (w *Workload) Run(ctx context.Context) error {
	var db *pgx.Conn
	if w.cfg.PostgresDSN != "" {
		var err error
		if db, err = w.setupPostgres(ctx); err != nil {
			return err
		}
		defer db.Close(context.Background())
	}
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: w.cfg.Brokers, BatchTimeout: 2 * time.Millisecond})
	if err != nil {
		return err
	}
	defer prod.Close()
	conn, err := grpc.NewClient(w.cfg.ModelserverAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	fconn, err := grpc.NewClient(w.cfg.FeatureserverAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer fconn.Close()
	w.features = featuresv1.NewFeatureServiceClient(fconn)
	predict := servingv1.NewPredictionServiceClient(conn)
	defer w.probes.Wait() // before the connections close

	var q queue
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	nextSession := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			for !nextSession.After(now) {
				s := w.gen.Session(nextSession)
				for i := range s.Clicks {
					heap.Push(&q, due{at: s.Clicks[i].Time, click: &s.Clicks[i]})
				}
				for i := range s.Txns {
					heap.Push(&q, due{at: s.Txns[i].Time, txn: &s.Txns[i]})
				}
				nextSession = nextSession.Add(w.gen.Gap(w.cfg.SessionsPerSecond))
			}
			var msgs []kafka.Message
			for q.Len() > 0 && !q[0].at.After(now) {
				d := heap.Pop(&q).(due)
				switch {
				case d.click != nil:
					msgs = append(msgs, ClickMessage(*d.click, now))
					w.Stats.Events.Add(1)
				case d.label != nil:
					// With PostgreSQL the outcome is recorded in public.labels and
					// reaches the metrics service through CDC; without it, on `labels`.
					if db != nil {
						if _, err := db.Exec(ctx, `INSERT INTO labels (prediction_id, txn_id, user_id, merchant_id, is_fraud)
							VALUES ($1, $2, $3, $4, $5) ON CONFLICT (prediction_id) DO NOTHING`,
							d.label.PredictionID, d.label.txnID, d.label.user, d.label.merchant, d.label.Value == 1); err != nil {
							if ctx.Err() != nil {
								return nil
							}
							w.Stats.Errors.Add(1)
							w.cfg.Log.Warn("demo label", "err", err)
							continue
						}
					} else {
						b, _ := json.Marshal(d.label.Label)
						msgs = append(msgs, kafka.Message{Topic: predlog.LabelsTopic, Key: []byte(d.label.PredictionID), Value: b})
					}
					w.Stats.Labels.Add(1)
				case d.txn != nil:
					id, txnID, err := w.transaction(ctx, predict, db, *d.txn)
					if err != nil {
						if ctx.Err() != nil {
							return nil
						}
						w.Stats.Errors.Add(1)
						w.cfg.Log.Warn("demo transaction", "user", d.txn.UserID, "err", err)
						continue
					}
					at := now.Add(w.cfg.LabelDelay)
					heap.Push(&q, due{at: at, label: &label{
						Label: predlog.Label{PredictionID: id, Value: d.txn.Label(), TimeMs: at.UnixMilli()},
						txnID: txnID, user: d.txn.UserID, merchant: d.txn.Merchant,
					}})
				}
			}
			if len(msgs) > 0 {
				if err := prod.Write(ctx, msgs...); err != nil && ctx.Err() == nil {
					w.Stats.Errors.Add(1)
					w.cfg.Log.Warn("demo produce", "err", err)
				}
			}
		}
	}
}

// ClickMessage is the events.clicks record of click c sent at now.
func ClickMessage(c Click, now time.Time) kafka.Message {
	b, _ := json.Marshal(map[string]any{"user_id": c.UserID, "page": c.Page, "ts_ms": now.UnixMilli()})
	return kafka.Message{Topic: ClicksTopic, Key: []byte(c.UserID), Value: b}
}

// transaction scores a payment the way a payment service would (before it
// is recorded), then records it in PostgreSQL. It returns the prediction id
// and the transaction id (0 without PostgreSQL).
func (w *Workload) transaction(ctx context.Context, predict servingv1.PredictionServiceClient, db *pgx.Conn, t Txn) (string, int64, error) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	start := time.Now()
	resp, err := predict.Predict(pctx, &servingv1.PredictRequest{
		Model:      Model,
		EntityKeys: map[string]string{"user_id": t.UserID},
		Features:   map[string]*featuresv1.Value{"amount": {Kind: &featuresv1.Value_DoubleValue{DoubleValue: t.Amount}}},
	})
	cancel()
	if err != nil {
		return "", 0, fmt.Errorf("predict: %w", err)
	}
	w.Stats.observe(time.Since(start))
	w.Stats.Predictions.Add(1)
	var txnID int64
	if db != nil {
		if err := db.QueryRow(ctx, "INSERT INTO transactions (user_id, merchant_id, amount) VALUES ($1, $2, $3) RETURNING txn_id",
			t.UserID, t.Merchant, strconv.FormatFloat(t.Amount, 'f', 2, 64)).Scan(&txnID); err != nil {
			return "", 0, fmt.Errorf("insert transaction: %w", err)
		}
		w.Stats.Events.Add(1)
		if w.probing.CompareAndSwap(false, true) {
			w.probes.Add(1)
			go func() {
				defer w.probes.Done()
				w.probeFreshness(ctx, t.UserID, t.Amount, time.Now())
			}()
		}
	}
	return resp.GetPredictionId(), txnID, nil
}

// probeFreshness measures commit → servable: how long until the
// featureserver serves the transaction just committed as the user's last amount.
func (w *Workload) probeFreshness(ctx context.Context, user string, amount float64, committed time.Time) {
	defer w.probing.Store(false)
	deadline := committed.Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := w.features.GetOnlineFeatures(ctx, &featuresv1.GetOnlineFeaturesRequest{
			Features: []string{"user_transactions:last_amount"},
			Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": user}}},
		})
		if err == nil && len(resp.GetResults()) == 1 && len(resp.GetResults()[0].GetValues()) == 1 {
			v := resp.GetResults()[0].GetValues()[0].GetValue()
			if got, ok := number(v); ok && got == amount {
				w.Stats.mu.Lock()
				w.Stats.freshness = time.Since(committed)
				w.Stats.mu.Unlock()
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func number(v *featuresv1.Value) (float64, bool) {
	switch k := v.GetKind().(type) {
	case *featuresv1.Value_DoubleValue:
		return k.DoubleValue, true
	case *featuresv1.Value_Int64Value:
		return float64(k.Int64Value), true
	case *featuresv1.Value_StringValue:
		f, err := strconv.ParseFloat(k.StringValue, 64)
		return f, err == nil
	}
	return 0, false
}

// setupPostgres inserts the users (the schema was applied before ingest started).
func (w *Workload) setupPostgres(ctx context.Context) (*pgx.Conn, error) {
	db, err := pgx.Connect(ctx, w.cfg.PostgresDSN)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	cols := make([][]string, 4)
	for _, u := range w.gen.Users {
		cols[0] = append(cols[0], u.ID)
		cols[1] = append(cols[1], u.Email)
		cols[2] = append(cols[2], u.Country)
		cols[3] = append(cols[3], u.Segment)
	}
	if _, err := db.Exec(ctx, `INSERT INTO users (user_id, email, country, segment)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT (user_id) DO NOTHING`,
		cols[0], cols[1], cols[2], cols[3]); err != nil {
		db.Close(ctx)
		return nil, fmt.Errorf("insert users: %w", err)
	}
	w.cfg.Log.Info("demo users inserted", "users", len(w.gen.Users))
	return db, nil
}

// ApplySchema applies the example's OLTP schema (idempotent).
func ApplySchema(ctx context.Context, dsn, file string) error {
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer db.Close(context.Background())
	schema, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	if _, err := db.Exec(ctx, string(schema)); err != nil {
		return fmt.Errorf("apply %s: %w", file, err)
	}
	return nil
}
