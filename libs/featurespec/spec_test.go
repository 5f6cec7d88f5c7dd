package featurespec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `name: user_txn
entity:
  name: user
  join_keys: [user_id]
source:
  topic: cdc.public.transactions
  format: debezium
  ops: [c, u]
  event_time: created_at
  allowed_lateness: 5m
  filter: amount > 0 and currency == 'EUR'
max_age: 1d
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: merchants_24h, column: merchant_id, aggregation: approx_distinct, window: 24h}
  - {name: p99_7d, column: amount, aggregation: p99, window: 7d}
  - {name: last_amount, column: amount, aggregation: latest}
`

func TestParseGood(t *testing.T) {
	v, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "user_txn" || v.Source.Format != FormatDebezium || time.Duration(v.MaxAge) != 24*time.Hour {
		t.Fatalf("parsed %+v", v)
	}
	if len(v.Source.Conditions) != 2 || v.Source.Conditions[1].Value != "EUR" {
		t.Fatalf("filter parsed as %+v", v.Source.Conditions)
	}
	f, ok := v.Feature("p99_7d")
	if !ok || time.Duration(f.Window) != 7*24*time.Hour {
		t.Fatalf("feature p99_7d: %+v %v", f, ok)
	}
	if v.Ref(f) != "user_txn:p99_7d" {
		t.Fatalf("Ref = %s", v.Ref(f))
	}
}

func TestValidationErrorsNameFileLineAndField(t *testing.T) {
	cases := []struct {
		name, edit, with string
		want             string // file:line: field
	}{
		{"bad name", "name: user_txn", "name: User-Txn", "bad.yaml:1: name"},
		{"no join keys", "join_keys: [user_id]", "join_keys: []", "bad.yaml:4: entity.join_keys"},
		{"no topic", "topic: cdc.public.transactions", "topic: ''", "bad.yaml:6: source.topic"},
		{"bad format", "format: debezium", "format: avro", "bad.yaml:7: source.format"},
		{"bad op", "ops: [c, u]", "ops: [c, x]", "bad.yaml:8: source.ops[1]"},
		{"negative lateness", "allowed_lateness: 5m", "allowed_lateness: -5m", "bad.yaml:10: source.allowed_lateness"},
		{"bad filter", "filter: amount > 0 and currency == 'EUR'", "filter: amount >", "bad.yaml:11: source.filter"},
		{"bad aggregation", "aggregation: p99", "aggregation: p42", "bad.yaml:16: features[2].aggregation"},
		{"missing column", "{name: merchants_24h, column: merchant_id,", "{name: merchants_24h,", "bad.yaml:15: features[1].column"},
		{"no window", "aggregation: count, window: 10m", "aggregation: count", "bad.yaml:14: features[0].window"},
		{"latest with window", "aggregation: latest}", "aggregation: latest, window: 1h}", "bad.yaml:17: features[3].window"},
		{"duplicate feature", "name: p99_7d", "name: n_10m", "bad.yaml:16: features[2].name"},
		{"bad duration", "window: 7d", "window: 7days", "bad.yaml"},
		{"unknown field", "max_age: 1d", "max_age: 1d\ncolour: red", "colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := strings.Replace(good, c.edit, c.with, 1)
			if y == good {
				t.Fatalf("edit %q not found", c.edit)
			}
			_, err := Parse("bad.yaml", []byte(y))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, c.want)
			}
			var se *Error
			if strings.Count(c.want, ":") >= 2 && !errors.As(err, &se) {
				t.Fatalf("error %v is not a *featurespec.Error", err)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", good)
	write("b.yml", strings.Replace(good, "name: user_txn", "name: other", 1))
	vs, err := LoadDir(dir)
	if err != nil || len(vs) != 2 {
		t.Fatalf("LoadDir = %d views, %v", len(vs), err)
	}
	write("c.yaml", good) // same view name again
	write("d.yaml", "name: [")
	_, err = LoadDir(dir)
	if err == nil || !strings.Contains(err.Error(), "c.yaml:1: name") || !strings.Contains(err.Error(), "d.yaml") {
		t.Fatalf("LoadDir with a duplicate and a broken file: %v", err)
	}
	if _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.yaml") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := LoadDir("../../examples/fraud/features"); err != nil {
		t.Fatalf("the fraud example does not validate: %v", err)
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"10m": 10 * time.Minute, "7d": 7 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%s) = %s, %v", in, got, err)
		}
	}
	for _, bad := range []string{"d", "1.5d", "x", "7 d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	if s := Duration(30 * 24 * time.Hour).String(); s != "30d" {
		t.Errorf("String = %s", s)
	}
}

func TestFilterMatch(t *testing.T) {
	cases := []struct {
		filter string
		row    map[string]any
		want   bool
	}{
		{"amount > 0", map[string]any{"amount": "12.50"}, true},
		{"amount > 0", map[string]any{"amount": -1.0}, false},
		{"amount > 0", map[string]any{}, false},
		{"amount != 0", map[string]any{}, true},
		{"status == 'ok' and amount <= 5", map[string]any{"status": "ok", "amount": 5.0}, true},
		{"status == 'ok' and amount <= 5", map[string]any{"status": "ok", "amount": 6.0}, false},
		{"note == 'a and b'", map[string]any{"note": "a and b"}, true},
		{"flag == true", map[string]any{"flag": true}, true},
		{"deleted == null", map[string]any{"deleted": nil}, true},
	}
	for _, c := range cases {
		conds, err := ParseFilter(c.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", c.filter, err)
		}
		if got := Match(conds, c.row); got != c.want {
			t.Errorf("%q on %v = %v, want %v", c.filter, c.row, got, c.want)
		}
	}
	for _, bad := range []string{"amount", "amount >", "> 3", "a == 'x' and", "flag < true", "a == b"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name: x\nfeatures: [{name: a}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse("fuzz.yaml", b)
		if err == nil && (v.Name == "" || len(v.Features) == 0 || len(v.Entity.JoinKeys) == 0) {
			t.Fatalf("accepted an incomplete view: %+v", v)
		}
	})
}
