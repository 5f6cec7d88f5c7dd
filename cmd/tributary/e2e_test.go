package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"
)

// TestEndToEnd runs the whole stack in process against a real PostgreSQL:
// a transaction inserted in PostgreSQL must change the feature served for
// its user and that user's prediction, the prediction must be on
// `predictions`, and it must be counted in the metrics.
func TestEndToEnd(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	ctx := testutil.Context(t, 3*time.Minute)
	dbDSN, db := exampleDB(t, ctx, dsn)
	const user = "u_e2e"
	if _, err := db.Exec(ctx, "INSERT INTO users (user_id, email, country, segment) VALUES ($1, 'e2e@example.com', 'GB', 'consumer')", user); err != nil {
		t.Fatal(err)
	}

	// On the real-server tier the stack runs on real Kafka and keeps its
	// tiles in the real CQL server; otherwise on the embedded parts.
	var brokers, scyllaHosts string
	if len(testutil.RealKafka()) > 0 {
		brokers = testutil.Kafka(t, 4)
	}
	scyllaHosts = os.Getenv("TRIBUTARY_SCYLLA_HOSTS")
	cfg := exampleStack(t, dbDSN, "e2e")
	cfg.KafkaBrokers, cfg.ScyllaHosts = brokers, scyllaHosts
	cfg.ScyllaKeyspace = fmt.Sprintf("tributary_e2e_%d_%d", os.Getpid(), time.Now().Unix()%100000)
	st := runStack(t, ctx, cfg, dsn)

	features := featuresv1.NewFeatureServiceClient(dial(t, st.Featureserver.GRPCAddr()))
	predict := servingv1.NewPredictionServiceClient(dial(t, st.Modelserver.GRPCAddr()))
	metrics := metricsv1.NewMetricsServiceClient(dial(t, st.Metrics.GRPCAddr()))

	// The user's profile arrives through the snapshot; no transaction yet.
	testutil.Eventually(t, 60*time.Second, "user profile from the CDC snapshot", func() error {
		v, err := feature(ctx, features, user, "user_profile:country")
		if err != nil {
			return err
		}
		if v.GetStatus() != featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT || v.GetValue().GetStringValue() != "GB" {
			return fmt.Errorf("country = %v", v)
		}
		return nil
	})
	before, err := predict.Predict(ctx, predictRequest(user))
	if err != nil {
		t.Fatal(err)
	}

	const amount = 987.65
	if _, err := db.Exec(ctx, "INSERT INTO transactions (user_id, merchant_id, amount) VALUES ($1, 'm001', $2)", user, strconv.FormatFloat(amount, 'f', 2, 64)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, "the new transaction in the served features", func() error {
		n, err := feature(ctx, features, user, "user_transactions:txn_count_10m")
		if err != nil {
			return err
		}
		last, err := feature(ctx, features, user, "user_transactions:last_amount")
		if err != nil {
			return err
		}
		// numeric columns arrive as decimal strings (Debezium's default), and
		// latest values keep them exact.
		if lastAmount, _ := strconv.ParseFloat(last.GetValue().GetStringValue(), 64); n.GetValue().GetDoubleValue() != 1 || lastAmount != amount {
			return fmt.Errorf("txn_count_10m = %v, last_amount = %v", n, last)
		}
		return nil
	})
	after, err := predict.Predict(ctx, predictRequest(user))
	if err != nil {
		t.Fatal(err)
	}
	if after.GetOutputs()["score"] == before.GetOutputs()["score"] {
		t.Fatalf("prediction did not change after the transaction: score %v before and after", before.GetOutputs()["score"])
	}
	if after.GetOutputs()["score"] <= before.GetOutputs()["score"] {
		t.Errorf("a large transaction should raise the fraud score: %v then %v", before.GetOutputs()["score"], after.GetOutputs()["score"])
	}

	// The prediction is logged with the features it used.
	rec := findPrediction(t, ctx, st.KafkaAddr(), after.GetPredictionId())
	if rec.Model != "fraud_lr" || rec.Features["txn_count_10m"] != 1 || rec.Features["amount"] != 50 {
		t.Errorf("logged prediction = %+v, want model fraud_lr with txn_count_10m 1 and amount 50", rec)
	}

	// And counted in the model's health.
	testutil.Eventually(t, 60*time.Second, "both predictions counted in the metrics", func() error {
		h, err := metrics.GetModelHealth(ctx, &metricsv1.GetModelHealthRequest{
			Model:     "fraud_lr",
			StartTime: timestamppb.New(time.Now().Add(-time.Hour)),
			EndTime:   timestamppb.New(time.Now().Add(time.Minute)),
		})
		if err != nil {
			return err
		}
		if got := h.GetTotal().GetRequests(); got < 2 {
			return fmt.Errorf("requests = %d", got)
		}
		return nil
	})

	// Rows one PostgreSQL transaction writes share now(), so their event
	// times tie; their change events sit on the partitions of their
	// primary keys and reach the featurizer in any order across them. The
	// latest value is the row written last (by LSN), not the one that
	// happened to arrive last (an audit saw 10.00 served here).
	t.Run("latest of one PostgreSQL transaction is its last row", func(t *testing.T) {
		// Three rounds: which partition arrives last is up to the broker,
		// so one round could pass by luck without the tie rule.
		for round := 1; round <= 3; round++ {
			amounts := []string{fmt.Sprintf("%d.00", 10+round), fmt.Sprintf("%d.00", 20+round), fmt.Sprintf("%d.00", 300+round)}
			tx, err := db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// now() of the transaction: the event time its rows share.
			var txTime time.Time
			if err := tx.QueryRow(ctx, "SELECT now()").Scan(&txTime); err != nil {
				t.Fatal(err)
			}
			for _, a := range amounts {
				if _, err := tx.Exec(ctx, "INSERT INTO transactions (user_id, merchant_id, amount) VALUES ($1, 'm002', $2)", user, a); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			// Tiles of different resolutions land separately: wait until the
			// count has the rows and the latest value is of this transaction.
			want := float64(1 + 3*round)
			var last *featuresv1.FeatureValue
			testutil.Eventually(t, 60*time.Second, fmt.Sprintf("round %d: the transaction's rows in txn_count_10m and last_amount", round), func() error {
				n, err := feature(ctx, features, user, "user_transactions:txn_count_10m")
				if err != nil {
					return err
				}
				if n.GetValue().GetDoubleValue() != want {
					return fmt.Errorf("txn_count_10m = %v, want %v", n, want)
				}
				if last, err = feature(ctx, features, user, "user_transactions:last_amount"); err != nil {
					return err
				}
				if last.GetEventTime().AsTime().Before(txTime.Truncate(time.Millisecond)) {
					return fmt.Errorf("last_amount %v is from before the transaction (%s)", last, txTime)
				}
				return nil
			})
			if got := last.GetValue().GetStringValue(); got != amounts[2] {
				t.Errorf("round %d: last_amount = %q, want %q, the transaction's last row (inserted %v)", round, got, amounts[2], amounts)
			}
		}
	})
}

func predictRequest(user string) *servingv1.PredictRequest {
	return &servingv1.PredictRequest{
		Model:      "fraud_lr",
		EntityKeys: map[string]string{"user_id": user},
		Features:   map[string]*featuresv1.Value{"amount": {Kind: &featuresv1.Value_DoubleValue{DoubleValue: 50}}},
	}
}

func feature(ctx context.Context, c featuresv1.FeatureServiceClient, user, ref string) (*featuresv1.FeatureValue, error) {
	resp, err := c.GetOnlineFeatures(ctx, &featuresv1.GetOnlineFeaturesRequest{
		Features: []string{ref},
		Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": user}}},
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetResults()) != 1 || len(resp.GetResults()[0].GetValues()) != 1 {
		return nil, fmt.Errorf("malformed response %v", resp)
	}
	return resp.GetResults()[0].GetValues()[0], nil
}

func findPrediction(t *testing.T, ctx context.Context, broker, id string) predlog.Prediction {
	t.Helper()
	conn, err := kafkago.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(predlog.PredictionsTopic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var found *predlog.Prediction
	testutil.Eventually(t, 30*time.Second, "prediction "+id+" on "+predlog.PredictionsTopic, func() error {
		for _, p := range parts {
			pr := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker}, Topic: predlog.PredictionsTopic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
			for {
				rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				m, err := pr.ReadMessage(rctx)
				cancel()
				if err != nil {
					break
				}
				if string(m.Key) == id {
					var rec predlog.Prediction
					if err := json.Unmarshal(m.Value, &rec); err != nil {
						pr.Close()
						t.Fatalf("prediction %s: %v", id, err)
					}
					found = &rec
				}
			}
			pr.Close()
		}
		if found == nil {
			return errors.New("not found yet")
		}
		return nil
	})
	return *found
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freshDatabase creates a database of its own for the test and drops it after.
func freshDatabase(t *testing.T, ctx context.Context, dsn string) string {
	t.Helper()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	name := fmt.Sprintf("tributary_e2e_%d", os.Getpid())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
}

func dropSlot(t *testing.T, dsn, slot string) {
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	// The stopped ingest's walsender may still hold the slot for a moment:
	// end it, then drop the slot.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	testutil.Eventually(t, 20*time.Second, "replication slot "+slot+" dropped", func() error {
		if _, err := c.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot); err != nil {
			return err
		}
		_, err := c.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		return err
	})
}

// testWriter sends service logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
