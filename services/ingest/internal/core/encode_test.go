package core

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
)

func txnTable(t testing.TB, rules MaskRules) *Table {
	t.Helper()
	tb, err := NewTable("public", "transactions", []Column{
		{Name: "txn_id", OID: OIDInt8}, {Name: "user_id", OID: OIDText}, {Name: "merchant_id", OID: OIDText},
		{Name: "amount", OID: OIDNumeric}, {Name: "currency", OID: OIDText}, {Name: "created_at", OID: OIDTimestamptz},
	}, []string{"txn_id"}, rules)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func row(vals ...string) []Datum {
	out := make([]Datum, len(vals))
	for i, v := range vals {
		switch v {
		case "<null>":
			out[i] = Datum{Kind: KindNull}
		case "<toast>":
			out[i] = Datum{Kind: KindUnchanged}
		default:
			out[i] = Datum{Kind: KindText, Data: []byte(v)}
		}
	}
	return out
}

func TestEnvelopeDecodesAsCDC(t *testing.T) {
	t.Parallel()
	enc := &Encoder{Name: "srv", DB: "db", Version: "v", Now: func() time.Time { return time.UnixMilli(5000) }}
	tb := txnTable(t, nil)
	ch := &Change{Table: tb, Op: cdc.OpUpdate, Before: row("7", "u1", "m", "1.00", "USD", "2024-01-02 03:04:05+00"),
		After: row("7", "u1", "m", "2.50", "<null>", "2024-01-02 03:04:05+00"),
		Pos:   cdc.Position{CommitLSN: 200, LSN: 150}, TxID: 42, CommitTime: time.UnixMilli(4000), Snapshot: "false"}
	var env cdc.Envelope
	raw := enc.AppendEnvelope(nil, ch)
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if env.Op != "u" || env.TsMs != 5000 || env.Source.TsMs != 4000 || env.Source.TxID != 42 || env.Source.LSN != 150 ||
		env.Source.Sequence != `["200","150"]` || env.Source.Table != "transactions" || env.Source.DB != "db" || env.Source.Name != "srv" {
		t.Errorf("envelope = %+v", env)
	}
	if env.After["amount"] != "2.50" || env.After["currency"] != nil || env.Before["amount"] != "1.00" || env.After["created_at"] != "2024-01-02T03:04:05Z" {
		t.Errorf("rows = before %v after %v", env.Before, env.After)
	}
	if key := enc.AppendKey(nil, tb, ch.After); string(key) != `{"txn_id":7}` {
		t.Errorf("key = %s", key)
	}
}

func TestBatcherKeyChangeAndToast(t *testing.T) {
	t.Parallel()
	tb := txnTable(t, nil)
	b := &Batcher{Enc: &Encoder{}, Tombstones: true}
	b.Add(&Change{Table: tb, Op: cdc.OpUpdate, Before: row("1", "u", "m", "1", "USD", "2024-01-02 03:04:05+00"),
		After: row("2", "u", "m", "1", "<toast>", "2024-01-02 03:04:05+00")})
	recs := b.Take().Records
	if len(recs) != 3 || recs[0].Op != "d" || recs[1].Value != nil || recs[2].Op != "c" {
		t.Fatalf("records = %+v", recs)
	}
	if string(recs[0].Key) != `{"txn_id":1}` || string(recs[2].Key) != `{"txn_id":2}` {
		t.Errorf("keys = %s, %s", recs[0].Key, recs[2].Key)
	}
	var env cdc.Envelope
	if err := json.Unmarshal(recs[2].Value, &env); err != nil || env.After["currency"] != "USD" {
		t.Errorf("unchanged TOAST value not filled from the old row: %v %v", env.After, err)
	}
	b.Add(&Change{Table: tb, Op: cdc.OpUpdate, After: row("3", "u", "m", "1", "<toast>", "2024-01-02 03:04:05+00")})
	if err := json.Unmarshal(b.Take().Records[0].Value, &env); err != nil || env.After["currency"] != UnavailableValue {
		t.Errorf("unchanged TOAST value = %v, want the placeholder", env.After["currency"])
	}
}

func TestMaskRules(t *testing.T) {
	t.Parallel()
	rules, err := ParseMaskRules("public.users.email=hash, public.users.phone=redact,public.users.ssn=drop")
	if err != nil || len(rules) != 3 || rules["public.users.ssn"] != MaskDrop || !rules.NeedsKey() {
		t.Fatalf("rules = %v, %v", rules, err)
	}
	for _, bad := range []string{"users.email=hash", "public.users.email", "public.users.email=encrypt"} {
		if _, err := ParseMaskRules(bad); err == nil {
			t.Errorf("ParseMaskRules(%q) accepted", bad)
		}
	}
	if _, err := NewTable("public", "t", []Column{{Name: "id", OID: OIDInt4}}, []string{"id"}, MaskRules{"public.t.id": MaskDrop}); err == nil {
		t.Error("dropping a key column was accepted")
	}
}

func TestFlushLSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		acked, enqueued, idle uint64
		inTxn                 bool
		want                  uint64
	}{
		{"behind: only what Kafka acknowledged", 100, 200, 300, false, 100},
		{"caught up: idle position", 200, 200, 300, false, 300},
		{"inside a transaction: no idle advance", 200, 200, 300, true, 200},
		{"idle older than acked", 200, 200, 150, false, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FlushLSN(tc.acked, tc.enqueued, tc.idle, tc.inTxn); got != tc.want {
				t.Errorf("FlushLSN = %d, want %d", got, tc.want)
			}
		})
	}
}

// BenchmarkEncodeRow is the per-row CPU cost of key + envelope for a demo transaction row.
func BenchmarkEncodeRow(b *testing.B) {
	tb := txnTable(b, nil)
	b.ReportAllocs()
	bt := &Batcher{Enc: &Encoder{Name: "tributary", DB: "db", Version: "v"}}
	ch := &Change{Table: tb, Op: cdc.OpCreate, After: row("123456", "user_42", "m_7", "123.45", "USD", "2024-01-02 03:04:05.123456+00"),
		Pos: cdc.Position{CommitLSN: 1 << 30, LSN: 1 << 30}, TxID: 1234, CommitTime: time.Now(), Snapshot: "false"}
	for i := 0; i < b.N; i++ {
		bt.Add(ch)
		if bt.Len() >= 1000 {
			bt.Take()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
