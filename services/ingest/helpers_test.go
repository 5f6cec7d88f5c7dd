package ingest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

// env is one test's PostgreSQL objects and Kafka broker.
type env struct {
	t      testing.TB
	dsn    string
	broker string
	db     *pgx.Conn
	name   string // unique prefix for tables, slot and publication
}

func newEnv(t *testing.T) *env { return newEnvTB(t) }

func newEnvTB(t testing.TB) *env {
	t.Helper()
	dsn := testutil.PostgresDSN(t)
	ctx := testutil.Context(t, time.Minute)
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	e := &env{t: t, dsn: dsn, broker: testutil.Kafka(t, 1), db: db, name: "ingest_" + hex.EncodeToString(b)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The walsender of a stopped service may take a moment to go away.
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, e.name)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Errorf("drop slot %s: %v", e.name, err)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := db.Exec(ctx, `DROP PUBLICATION IF EXISTS `+e.name); err != nil {
			t.Errorf("drop publication: %v", err)
		}
		rows, err := db.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE $1`, e.name+"%")
		if err == nil {
			names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, n := range names {
				if _, err := db.Exec(ctx, `DROP TABLE IF EXISTS public.`+n+` CASCADE`); err != nil {
					t.Errorf("drop table %s: %v", n, err)
				}
			}
		}
		_ = db.Close(ctx)
	})
	return e
}

// table is the unique name of a test table.
func (e *env) table(suffix string) string { return e.name + "_" + suffix }

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.db.Exec(ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) config(tables ...string) ingest.Config {
	cfg := ingest.DefaultConfig()
	cfg.Common.KafkaBrokers = e.broker
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "warn"
	cfg.PostgresDSN = e.dsn
	qualified := make([]string, len(tables))
	for i, t := range tables {
		qualified[i] = "public." + t
	}
	cfg.Tables = strings.Join(qualified, ",")
	cfg.Slot = e.name
	cfg.Publication = e.name
	cfg.StateTopic = "state." + e.name
	cfg.StatusInterval = 100 * time.Millisecond
	cfg.Mask = ""
	return cfg
}

// running is a started service.
type running struct {
	svc    *ingest.Service
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg ingest.Config, deps ingest.Deps) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if deps.BackoffMax == 0 {
		deps.BackoffMax = 500 * time.Millisecond
	}
	svc, err := ingest.New(ctx, cfg, deps)
	if err != nil {
		cancel()
		t.Fatalf("new ingest: %v", err)
	}
	r := &running{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the service without any flush of its own: whatever Kafka did
// not acknowledge yet is lost from this run, as in a crash.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("ingest run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("ingest did not stop within 20s")
	}
}

func (r *running) get(path string) (int, string, error) {
	resp, err := http.Get("http://" + r.svc.AdminAddr() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (r *running) waitReady(t testing.TB) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "ingest ready", func() error {
		code, body, err := r.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
}

// event is one record of a cdc topic, decoded.
type event struct {
	Key    map[string]any
	Raw    kafkago.Message
	Env    *cdc.Envelope // nil for tombstones
	Offset int64
}

// readTopic returns every record of partition 0 of topic.
func readTopic(ctx context.Context, broker, topic string) ([]event, error) {
	conn, err := kafkago.DialLeader(ctx, "tcp", broker, topic, 0)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return nil, err
	}
	var out []event
	for off := first; off < last; {
		if _, err := conn.Seek(off, kafkago.SeekAbsolute); err != nil {
			return nil, err
		}
		batch := conn.ReadBatch(1, 50<<20)
		n := 0
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			n++
			off = m.Offset + 1
			ev := event{Raw: m, Offset: m.Offset}
			if len(m.Key) > 0 && m.Key[0] == '{' {
				if err := json.Unmarshal(m.Key, &ev.Key); err != nil {
					return nil, fmt.Errorf("key at %d: %w: %s", m.Offset, err, m.Key)
				}
			}
			if m.Value != nil {
				ev.Env = &cdc.Envelope{}
				d := json.NewDecoder(strings.NewReader(string(m.Value)))
				d.UseNumber()
				if err := d.Decode(ev.Env); err != nil {
					return nil, fmt.Errorf("value at %d: %w: %s", m.Offset, err, m.Value)
				}
			}
			out = append(out, ev)
		}
		_ = batch.Close()
		if n == 0 {
			break
		}
	}
	return out, nil
}

// waitEvents polls topic until cond accepts its records and returns them.
func (e *env) waitEvents(topic string, timeout time.Duration, what string, cond func([]event) error) []event {
	e.t.Helper()
	var got []event
	testutil.Eventually(e.t, timeout, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		evs, err := readTopic(ctx, e.broker, topic)
		if err != nil {
			return err
		}
		got = evs
		return cond(evs)
	})
	return got
}

func ops(evs []event) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Env == nil {
			b.WriteByte('~')
		} else {
			b.WriteString(ev.Env.Op)
		}
	}
	return b.String()
}

func atLeast(n int) func([]event) error {
	return func(evs []event) error {
		if len(evs) < n {
			return fmt.Errorf("have %d records (%s), want %d", len(evs), ops(evs), n)
		}
		return nil
	}
}

func num(v any) string {
	switch x := v.(type) {
	case json.Number:
		return x.String()
	case nil:
		return "<nil>"
	}
	return fmt.Sprint(v)
}

var errSkip = errors.New("skip")
