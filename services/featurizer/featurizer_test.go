package featurizer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featurizer"
)

const clicksView = `
name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts_ms, allowed_lateness: 1m}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: dwell_sum_1h, column: dwell, aggregation: sum, window: 1h}
  - {name: last_page, column: page, aggregation: latest}
`

const txnView = `
name: txns
entity: {name: user, join_keys: [user_id]}
source: {topic: cdc.public.transactions, format: debezium, event_time: created_at, allowed_lateness: 1m}
features:
  - {name: n_1h, aggregation: count, window: 1h}
  - {name: amount_sum_1h, column: amount, aggregation: sum, window: 1h}
`

// base is a fixed event time (aligned to 1h) so expected tiles are known.
var base = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()

func writeViews(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type running struct {
	svc    *featurizer.Service
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, broker, dir string) *running {
	t.Helper()
	return startWith(t, broker, dir, nil)
}

func startWith(t *testing.T, broker, dir string, mod func(*featurizer.Config)) *running {
	t.Helper()
	cfg := featurizer.DefaultConfig()
	cfg.Common = config.Common{KafkaBrokers: broker, AdminAddr: "127.0.0.1:0", LogLevel: "warn"}
	cfg.Features = dir
	cfg.FlushInterval = 50 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := featurizer.New(ctx, cfg, featurizer.Deps{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	testutil.Eventually(t, 30*time.Second, "featurizer ready", func() error {
		select {
		case err := <-r.done:
			r.done <- err
			return fmt.Errorf("featurizer exited: %v", err)
		default:
		}
		resp, err := http.Get("http://" + svc.AdminAddr() + "/readyz")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("featurizer run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("featurizer did not stop within 20s")
	}
}

func produce(t *testing.T, broker, topic string, recs ...map[string]any) {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint(r["user_id"])
		if a, ok := r["after"].(map[string]any); ok {
			key = fmt.Sprint(a["txn_id"])
		}
		msgs[i] = kafka.Message{Key: []byte(key), Value: b}
	}
	if err := p.Write(testutil.Context(t, 30*time.Second), msgs...); err != nil {
		t.Fatal(err)
	}
}

// produceTombstone writes a record without a value under key.
func produceTombstone(t *testing.T, broker, topic, key string) {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if err := p.Write(testutil.Context(t, 30*time.Second), kafka.Message{Key: []byte(key)}); err != nil {
		t.Fatal(err)
	}
}

// readTiles reads features.tiles to its end and returns the live tiles by key.
func readTiles(t *testing.T, broker string) map[string]*tiles.Tile {
	t.Helper()
	out := map[string]*tiles.Tile{}
	_, err := kafka.ReadAll(testutil.Context(t, 30*time.Second), []string{broker}, tiles.Topic, func(m kafka.Message) error {
		k, v := m.Key, m.Value
		if v == nil {
			delete(out, string(k))
			return nil
		}
		tl, err := tiles.Decode(v)
		if err != nil {
			return err
		}
		if tl.Key() != string(k) {
			return fmt.Errorf("tile under key %s says it is %s", k, tl.Key())
		}
		out[string(k)] = tl
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitValue polls features.tiles until feature of view for entity at nowMs
// has the wanted value.
func waitValue(t *testing.T, broker string, views map[string]*featurespec.View, ref, entity string, nowMs int64, want any) {
	t.Helper()
	var vname, fname string
	for i := range ref {
		if ref[i] == ':' {
			vname, fname = ref[:i], ref[i+1:]
		}
	}
	v := views[vname]
	f, ok := v.Feature(fname)
	if !ok {
		t.Fatalf("no feature %s", ref)
	}
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%s of %s = %v", ref, entity, want), func() error {
		var ts []*tiles.Tile
		for _, tl := range readTiles(t, broker) {
			if tl.View == vname && tl.Entity == entity {
				ts = append(ts, tl)
			}
		}
		ir, _ := tiles.Window(ts, f, nowMs)
		got, _ := ir.Value(f.Aggregation)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("got %v from %d tiles", got, len(ts))
		}
		return nil
	})
}

func loadViews(t *testing.T, dir string) map[string]*featurespec.View {
	t.Helper()
	vs, err := featurespec.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*featurespec.View{}
	for _, v := range vs {
		out[v.Name] = v
	}
	return out
}

func click(user string, offMs int64, page string, dwell float64) map[string]any {
	return map[string]any{"user_id": user, "ts_ms": base + offMs, "page": page, "dwell": dwell}
}

func txn(op string, id int, user string, amount string, before map[string]any) map[string]any {
	row := map[string]any{"txn_id": id, "user_id": user, "amount": amount, "created_at": time.UnixMilli(base + int64(id)*1000).UTC().Format(time.RFC3339Nano)}
	e := map[string]any{"op": op, "after": row, "before": before, "ts_ms": base}
	if op == "d" {
		e["after"] = nil
		e["before"] = row
	}
	return e
}

func TestEventsInTilesOutAndRestartRestores(t *testing.T) {
	broker := testutil.Kafka(t, 2)
	dir := writeViews(t, map[string]string{"clicks.yaml": clicksView, "txns.yaml": txnView})
	views := loadViews(t, dir)
	r := start(t, broker, dir)

	min := int64(time.Minute / time.Millisecond)
	produce(t, broker, "events.clicks",
		click("u1", 1*min, "home", 2),
		click("u1", 2*min, "cart", 3),
		click("u1", 12*min, "pay", 4),
		click("u2", 3*min, "home", 10),
		click("u1", 11*min, "late-ok", 1),   // 1 minute late: allowed
		click("u1", 5*min, "too-late", 100), // 7 minutes late: dropped
	)
	produce(t, broker, "cdc.public.transactions",
		txn("c", 1, "u1", "10.50", nil),
		txn("c", 2, "u1", "4.50", nil),
		txn("c", 3, "u2", "7.00", nil),
	)
	now := base + 14*min
	// The 10m window at 10:14 starts at 10:00 (aligned down to 5m tiles): the
	// clicks at 1, 2, 11 and 12 minutes count, the one 7 minutes late does not.
	waitValue(t, broker, views, "clicks:n_10m", "u1", now, 4.0)
	waitValue(t, broker, views, "clicks:dwell_sum_1h", "u1", now, 10.0)
	waitValue(t, broker, views, "clicks:last_page", "u1", now, "pay")
	waitValue(t, broker, views, "clicks:n_10m", "u2", now, 1.0)
	waitValue(t, broker, views, "txns:amount_sum_1h", "u1", now, 15.0)

	// An update retracts the old amount; a delete retracts the row.
	produce(t, broker, "cdc.public.transactions",
		txn("u", 1, "u1", "20.00", map[string]any{"txn_id": 1, "user_id": "u1", "amount": "10.50", "created_at": time.UnixMilli(base + 1000).UTC().Format(time.RFC3339Nano)}),
		txn("d", 3, "u2", "7.00", nil),
	)
	// The delete's tombstone (no value), as ingest writes it for compaction:
	// skipped and counted as a tombstone, not as an invalid record.
	produceTombstone(t, broker, "cdc.public.transactions", "3")
	waitValue(t, broker, views, "txns:amount_sum_1h", "u1", now, 24.5)
	waitValue(t, broker, views, "txns:n_1h", "u1", now, 2.0)
	waitValue(t, broker, views, "txns:n_1h", "u2", now, 0.0)

	// The metrics the issue asks for are on the admin port.
	testutil.Eventually(t, 10*time.Second, "featurizer metrics", func() error {
		resp, err := http.Get("http://" + r.svc.AdminAddr() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		for _, want := range []string{
			"tributary_featurizer_events_total 12", // 6 clicks, 5 change events, 1 tombstone
			"tributary_featurizer_tombstones_total 1",
			"tributary_featurizer_invalid_events_total 0",
			"tributary_featurizer_late_events_dropped_total 1",
			"tributary_featurizer_tiles_emitted_total",
			"tributary_featurizer_state_tiles",
			`tributary_kafka_consumer_lag{group="tributary-featurizer",partition="`,
		} {
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("no %q in /metrics:\n%s", want, grepLines(string(body), "tributary_"))
			}
		}
		return nil
	})

	r.stop(t)
	before := readTiles(t, broker)

	// A new instance restores the state and continues from it.
	start(t, broker, dir)
	produce(t, broker, "events.clicks", click("u1", 13*min, "help", 5))
	waitValue(t, broker, views, "clicks:dwell_sum_1h", "u1", now, 15.0)
	waitValue(t, broker, views, "clicks:n_10m", "u1", now, 5.0)
	after := readTiles(t, broker)
	for k, tl := range before {
		if tl.View == "txns" {
			a, ok := after[k]
			if !ok {
				t.Errorf("tile %s vanished after restart", k)
				continue
			}
			bj, _ := json.Marshal(tl)
			aj, _ := json.Marshal(a)
			if string(aj) != string(bj) {
				t.Errorf("tile %s changed across a restart without new events:\nbefore %s\nafter  %s", k, bj, aj)
			}
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := writeViews(t, map[string]string{"bad.yaml": "name: Bad\n"})
	cases := []struct {
		name string
		mod  func(*featurizer.Config)
		want string
	}{
		{"no features dir", func(c *featurizer.Config) { c.Features = "" }, "features:"},
		{"bad view", func(c *featurizer.Config) { c.Features = dir }, "bad.yaml:1: name"},
		{"flush interval", func(c *featurizer.Config) { c.FlushInterval = 0 }, "flush-interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := featurizer.DefaultConfig()
			cfg.Common.AdminAddr = "127.0.0.1:0"
			cfg.Features = "../../examples/fraud/features"
			tc.mod(&cfg)
			_, err := featurizer.New(context.Background(), cfg, featurizer.Deps{})
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
