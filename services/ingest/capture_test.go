package ingest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

// TestTypeMapping writes one row of every mapped type and checks the JSON of
// the snapshot row and of the streamed row: both paths map alike.
func TestTypeMapping(t *testing.T) {
	e := newEnv(t)
	tbl, mood := e.table("types"), e.name+"_mood"
	e.exec(`CREATE TYPE ` + mood + ` AS ENUM ('happy', 'sad')`)
	t.Cleanup(func() {
		_, _ = e.db.Exec(context.Background(), `DROP TABLE IF EXISTS `+tbl+`; DROP TYPE IF EXISTS `+mood)
	})
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY,
		c_int2 int2, c_int4 int4, c_int8 int8, c_numeric numeric(30,10), c_real real, c_double double precision,
		c_bool boolean, c_text text, c_varchar varchar(20), c_uuid uuid, c_date date, c_ts timestamp,
		c_tstz timestamptz, c_interval interval, c_json json, c_jsonb jsonb, c_bytea bytea,
		c_int_arr int[], c_text_arr text[], c_enum ` + mood + `, c_enum_arr ` + mood + `[], c_null text)`)
	const values = `-32768, 2147483647, 9223372036854775807, 12345678901234567890.0123456789, 1.5, -2.25e-7,
		true, 'line1' || chr(10) || 'ünïcode "q"', 'var', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-01-02',
		'2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', '1 year 2 mons 3 days 04:05:06.5',
		'{"a": [1, 2]}', '{"b": {"c": null}}', '\x00ff10', '{1,NULL,3}', '{"a,b",NULL,"c\"d"}', 'sad', '{happy,sad}', NULL`
	e.exec(`INSERT INTO ` + tbl + ` VALUES (1, ` + values + `)`)
	want := map[string]any{
		"c_int2": json.Number("-32768"), "c_int4": json.Number("2147483647"), "c_int8": json.Number("9223372036854775807"),
		"c_numeric": "12345678901234567890.0123456789", "c_real": json.Number("1.5"), "c_double": json.Number("-2.25e-07"),
		"c_bool": true, "c_text": "line1\nünïcode \"q\"", "c_varchar": "var", "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"c_date": json.Number("19724"), "c_ts": json.Number("1704164645123456"), "c_tstz": "2024-01-02T01:04:05.5Z",
		"c_interval": "P1Y2M3DT4H5M6.5S", "c_json": `{"a": [1, 2]}`, "c_jsonb": `{"b": {"c": null}}`, "c_bytea": "AP8Q",
		"c_int_arr":  []any{json.Number("1"), nil, json.Number("3")},
		"c_text_arr": []any{"a,b", nil, `c"d`}, "c_enum": "sad", "c_enum_arr": []any{"happy", "sad"}, "c_null": nil,
	}
	r := start(t, e.config(tbl), ingest.Deps{})
	r.waitReady(t)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (2, ` + values + `)`)
	topic := cdc.Topic("public", tbl)
	evs := e.waitEvents(topic, 30*time.Second, "snapshot and streamed row", atLeast(2))
	for _, ev := range evs[:2] {
		for col, w := range want {
			if got := ev.Env.After[col]; !reflect.DeepEqual(got, w) {
				t.Errorf("op %s %s = %#v, want %#v", ev.Env.Op, col, got, w)
			}
		}
	}
	if ops(evs[:2]) != "rc" {
		t.Errorf("ops = %s, want rc", ops(evs))
	}
}

// TestReplicaIdentityAndToast: with REPLICA IDENTITY FULL update and delete
// carry the whole old row; with the default identity an unchanged TOASTed
// value is the placeholder, never null, and with FULL it is filled in.
func TestReplicaIdentityAndToast(t *testing.T) {
	e := newEnv(t)
	def, full := e.table("def"), e.table("full")
	for _, tb := range []string{def, full} {
		e.exec(`CREATE TABLE ` + tb + ` (id int PRIMARY KEY, n int, big text)`)
	}
	e.exec(`ALTER TABLE ` + full + ` REPLICA IDENTITY FULL`)
	// Incompressible text longer than the TOAST threshold is stored out of line.
	bigSQL := `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)`
	r := start(t, e.config(def, full), ingest.Deps{})
	r.waitReady(t)
	for _, tb := range []string{def, full} {
		e.exec(`INSERT INTO ` + tb + ` VALUES (1, 1, ` + bigSQL + `)`)
		e.exec(`UPDATE ` + tb + ` SET n = 2 WHERE id = 1`)
		e.exec(`DELETE FROM ` + tb + ` WHERE id = 1`)
	}
	var big string
	if err := e.db.QueryRow(context.Background(), `SELECT `+bigSQL).Scan(&big); err != nil {
		t.Fatal(err)
	}
	evDef := e.waitEvents(cdc.Topic("public", def), 30*time.Second, "default identity events", atLeast(4))
	evFull := e.waitEvents(cdc.Topic("public", full), 30*time.Second, "full identity events", atLeast(4))
	if ops(evDef) != "cud~" || ops(evFull) != "cud~" {
		t.Fatalf("ops = %s / %s, want cud~", ops(evDef), ops(evFull))
	}
	// Default identity: no before on update, the unchanged TOASTed value is the placeholder.
	if u := evDef[1].Env; u.Before != nil || u.After["big"] != "__debezium_unavailable_value" || num(u.After["n"]) != "2" {
		t.Errorf("default identity update: before %v, after big %.40v n %v", u.Before, u.After["big"], u.After["n"])
	}
	if d := evDef[2].Env; num(d.Before["id"]) != "1" || d.Before["n"] != nil {
		t.Errorf("default identity delete before = %v, want only the key", d.Before)
	}
	// Full identity: whole old rows, and the unchanged value filled in from the old row.
	if u := evFull[1].Env; num(u.Before["n"]) != "1" || u.Before["big"] != big || u.After["big"] != big {
		t.Errorf("full identity update: before n %v, before big ok %v, after big ok %v", u.Before["n"], u.Before["big"] == big, u.After["big"] == big)
	}
	if d := evFull[2].Env; num(d.Before["n"]) != "2" || d.Before["big"] != big {
		t.Errorf("full identity delete before n %v big ok %v", d.Before["n"], d.Before["big"] == big)
	}
}

// TestSchemaChangeKeyChangeTruncate: ADD/DROP COLUMN mid-stream changes the
// shape of later events; an update of the key is a delete and a create; a
// truncate is an op t event.
func TestSchemaChangeKeyChangeTruncate(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("shape")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, v text)`)
	r := start(t, e.config(tbl), ingest.Deps{})
	r.waitReady(t)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (1, 'one')`)
	e.exec(`ALTER TABLE ` + tbl + ` ADD COLUMN extra int`)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (2, 'two', 22)`)
	e.exec(`ALTER TABLE ` + tbl + ` DROP COLUMN v`)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (3, 33)`)
	e.exec(`UPDATE ` + tbl + ` SET id = 4 WHERE id = 3`)
	e.exec(`TRUNCATE ` + tbl)
	evs := e.waitEvents(cdc.Topic("public", tbl), 30*time.Second, "events", atLeast(7))
	if got := ops(evs); got != "cccd~ct" {
		t.Fatalf("ops = %s, want cccd~ct", got)
	}
	keys := func(m map[string]any) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		return fmt.Sprint(len(ks), " ", strings.Contains(fmt.Sprint(m), "extra"), " ", strings.Contains(fmt.Sprint(m), "v:"))
	}
	if a := evs[0].Env.After; len(a) != 2 || a["v"] != "one" {
		t.Errorf("before ADD COLUMN: %v", a)
	}
	if a := evs[1].Env.After; len(a) != 3 || num(a["extra"]) != "22" {
		t.Errorf("after ADD COLUMN: %v (%s)", a, keys(a))
	}
	if a := evs[2].Env.After; len(a) != 2 || num(a["extra"]) != "33" {
		t.Errorf("after DROP COLUMN: %v", a)
	}
	if d, c := evs[3], evs[5]; num(d.Key["id"]) != "3" || num(c.Key["id"]) != "4" || c.Env.Op != "c" {
		t.Errorf("key change: delete key %v, create key %v", d.Key, c.Key)
	}
	if tr := evs[6]; tr.Raw.Key != nil || tr.Env.Before != nil || tr.Env.After != nil || tr.Env.Source.Table != tbl {
		t.Errorf("truncate = key %q %+v", tr.Raw.Key, tr.Env)
	}
}

// TestNoPrimaryKey: a table without a primary key is refused with a message
// that says what to do; keyed by all columns it is captured.
func TestNoPrimaryKey(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("nopk")
	e.exec(`CREATE TABLE ` + tbl + ` (a int, b text)`)
	cfg := e.config(tbl)
	r := start(t, cfg, ingest.Deps{})
	testutil.Eventually(t, 30*time.Second, "readyz to explain the missing primary key", func() error {
		code, body, err := r.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "has no primary key") || !strings.Contains(body, "--key-all-columns") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	r.stop(t)

	e.exec(`ALTER TABLE ` + tbl + ` REPLICA IDENTITY FULL`)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (1, 'x')`)
	cfg.KeyAllColumns = true
	r = start(t, cfg, ingest.Deps{})
	r.waitReady(t)
	e.exec(`DELETE FROM ` + tbl)
	evs := e.waitEvents(cdc.Topic("public", tbl), 30*time.Second, "snapshot row and delete", atLeast(3))
	if ops(evs) != "rd~" {
		t.Fatalf("ops = %s, want rd~", ops(evs))
	}
	if k := evs[1].Key; num(k["a"]) != "1" || k["b"] != "x" {
		t.Errorf("delete key = %v, want all columns", k)
	}
}

// TestMasking: hash (HMAC-SHA256 under the configured key), redact and drop
// are applied before the data leaves, in snapshot and stream alike.
func TestMasking(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("people")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, email text, phone text, ssn text, country text)`)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (1, 'a@example.com', '555-1', '111', 'NL')`)
	cfg := e.config(tbl)
	p := "public." + tbl + "."
	cfg.Mask = p + "email=hash," + p + "phone=redact," + p + "ssn=drop"
	key := "test-key"
	r := start(t, cfg, ingest.Deps{Getenv: func(k string) string {
		if k == ingest.MaskKeyEnv {
			return key
		}
		return ""
	}})
	r.waitReady(t)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (2, 'b@example.com', '555-2', '222', NULL)`)
	evs := e.waitEvents(cdc.Topic("public", tbl), 30*time.Second, "two rows", atLeast(2))
	for i, email := range []string{"a@example.com", "b@example.com"} {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(email))
		a := evs[i].Env.After
		if a["email"] != hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("row %d email = %v, want its HMAC", i+1, a["email"])
		}
		if a["phone"] != "****" {
			t.Errorf("row %d phone = %v, want redacted", i+1, a["phone"])
		}
		if _, ok := a["ssn"]; ok {
			t.Errorf("row %d ssn present: %v", i+1, a)
		}
		if strings.Contains(string(evs[i].Raw.Value), "example.com") || strings.Contains(string(evs[i].Raw.Value), "555-") {
			t.Errorf("row %d leaks a masked value: %s", i+1, evs[i].Raw.Value)
		}
	}
}

// TestMissingReplicationPrivilege: a role without REPLICATION is told how to fix it.
func TestMissingReplicationPrivilege(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("priv")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY)`)
	role := e.name + "_norepl"
	e.exec(`CREATE ROLE ` + role + ` LOGIN PASSWORD 'pw' NOREPLICATION`)
	t.Cleanup(func() { _, _ = e.db.Exec(context.Background(), `DROP ROLE IF EXISTS `+role) })
	u, err := url.Parse(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "pw")
	cfg := e.config(tbl)
	cfg.PostgresDSN = u.String()
	r := start(t, cfg, ingest.Deps{})
	testutil.Eventually(t, 30*time.Second, "readyz to name the missing privilege", func() error {
		code, body, err := r.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "lacks the REPLICATION privilege") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
}

// TestPostgresDownAtStart: ingest keeps running, not ready, while PostgreSQL
// is unreachable.
func TestPostgresDownAtStart(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(e.table("none"))
	cfg.PostgresDSN = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"
	r := start(t, cfg, ingest.Deps{})
	testutil.Eventually(t, 30*time.Second, "readyz to report postgres unreachable", func() error {
		code, body, err := r.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "postgres: connect to postgres") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	select {
	case err := <-r.done:
		t.Fatalf("ingest exited while postgres is down: %v", err)
	default:
	}
}
