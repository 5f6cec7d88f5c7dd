package pinotstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/startreedata/pinot-client-go/pinot"

	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/pinotstore"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
	"github.com/tributary-ml/tributary/services/metrics/internal/pinottest"
	"github.com/tributary-ml/tributary/services/metrics/internal/storetest"
)

// The Pinot schema and REALTIME table config the compose stack creates.
const (
	schemaPath = "../../../../../deploy/pinot/model_minute_schema.json"
	tablePath  = "../../../../../deploy/pinot/model_minute_realtime_table.json"
)

// schema is the deployed schema with the deployed upsert comparison column.
func schema(t *testing.T) pinottest.Schema {
	t.Helper()
	s, err := pinottest.LoadDeployed(schemaPath, tablePath)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var added = pinotstore.AddedColumns()

func seed(t *testing.T, rows []core.Row) (*pinottest.Broker, *pinotstore.Store) {
	t.Helper()
	b := pinottest.Start(t, schema(t))
	for _, r := range rows {
		rec, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Ingest(rec); err != nil {
			t.Fatal(err)
		}
	}
	s, err := pinotstore.New(b.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, rows []core.Row) core.RowReader {
		_, s := seed(t, rows)
		return s
	})
}

func TestExceptionsInA200AreErrors(t *testing.T) {
	b, s := seed(t, storetest.Rows())
	b.FailNext("ServerTimeoutError: 1 servers not responded")
	_, err := s.Minutes(context.Background(), core.Query{Model: "fraud", FromMs: 0, ToMs: 1 << 62})
	if err == nil || !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), "ServerTimeoutError") {
		t.Fatalf("Minutes with an exception answer: %v, want ErrUnavailable naming the exception", err)
	}
	b.FailNext("BrokerResourceMissingError")
	if _, err := s.Models(context.Background(), 0, 1<<62); err == nil || !strings.Contains(err.Error(), "BrokerResourceMissingError") {
		t.Fatalf("Models with an exception answer: %v", err)
	}
	// And the next query works again.
	if _, err := s.Models(context.Background(), 0, 1<<62); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableBrokerIsUnavailable(t *testing.T) {
	s, err := pinotstore.New("http://127.0.0.1:1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Models(context.Background(), 0, 1); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

func TestQueriesUseOnlySchemaColumns(t *testing.T) {
	// The stand-in rejects unknown columns with an exception; check it does,
	// so the conformance run above proves the adapter's SQL fits the schema.
	sc := schema(t)
	delete(sc.Columns, "auc")
	b2 := pinottest.Start(t, sc)
	s2, err := pinotstore.New(b2.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Minutes(context.Background(), core.Query{Model: "m", FromMs: 0, ToMs: 1})
	if err == nil || !strings.Contains(err.Error(), "Unknown columnName 'auc'") {
		t.Fatalf("query against a schema without auc: %v, want an unknown column exception", err)
	}
}

// TestDeploySchemaHasRowColumns: every field of a row on
// metrics.model_minute is a column of the deployed schema with the right
// type (Pinot's JSON decoder silently drops the others).
func TestDeploySchemaHasRowColumns(t *testing.T) {
	s, err := pinottest.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != pinotstore.Table || s.PK != "pk" {
		t.Errorf("schema %q with primary key %q, want %s keyed on pk", s.Name, s.PK, pinotstore.Table)
	}
	for _, c := range core.Columns() {
		typ, ok := s.Columns[c]
		switch {
		case !ok:
			t.Errorf("deploy/pinot schema lacks column %s", c)
		case added[c] != "" && typ != added[c]:
			t.Errorf("column %s is %s in deploy/pinot, want %s", c, typ, added[c])
		}
	}
	// The fields a published row really has, with their JSON kinds.
	rec, err := storetest.Rows()[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(rec, &obj); err != nil {
		t.Fatal(err)
	}
	for field, v := range obj {
		typ, ok := s.Columns[field]
		if !ok {
			t.Errorf("a row has field %s, which the deploy/pinot schema lacks", field)
			continue
		}
		_, isString := v.(string)
		if isString != (typ == "STRING") {
			t.Errorf("row field %s is %T, schema type %s", field, v, typ)
		}
	}
	if len(obj) != len(core.Columns()) {
		t.Errorf("a row has %d fields, core.Columns() lists %d", len(obj), len(core.Columns()))
	}
}

type fieldSpec struct {
	Name      string `json:"name"`
	DataType  string `json:"dataType"`
	MaxLength int    `json:"maxLength"`
}

// TestDeployTableConfigIsUpsert: the REALTIME table config parses and has
// what a FULL upsert on pk needs, and the string columns are long enough
// for what the service writes.
func TestDeployTableConfigIsUpsert(t *testing.T) {
	c, err := pinottest.LoadTableConfig(tablePath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pinottest.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.TableName != pinotstore.Table || c.TableType != "REALTIME" || c.SegmentsConfig.SchemaName != s.Name {
		t.Errorf("table %q type %q schema %q, want REALTIME %s on schema %s", c.TableName, c.TableType, c.SegmentsConfig.SchemaName, pinotstore.Table, s.Name)
	}
	if c.SegmentsConfig.TimeColumnName != "minute" || s.Columns["minute"] != "LONG" {
		t.Errorf("time column %q (schema type %q), want minute LONG", c.SegmentsConfig.TimeColumnName, s.Columns["minute"])
	}
	if c.Routing.InstanceSelectorType != "strictReplicaGroup" {
		t.Errorf("routing %q: upsert needs strictReplicaGroup", c.Routing.InstanceSelectorType)
	}
	if c.UpsertConfig == nil || c.UpsertConfig.Mode != "FULL" {
		t.Fatalf("upsertConfig %+v, want mode FULL", c.UpsertConfig)
	}
	if cc := c.UpsertConfig.ComparisonColumns; len(cc) != 1 || cc[0] != "revision" || s.Columns["revision"] != "LONG" {
		t.Errorf("comparison columns %v, want [revision] (a LONG column)", cc)
	}
	sc := c.TableIndexConfig.StreamConfigs
	for k, want := range map[string]string{
		"streamType": "kafka", "stream.kafka.topic.name": core.Topic, "stream.kafka.consumer.type": "lowlevel",
		"stream.kafka.decoder.class.name": "org.apache.pinot.plugin.stream.kafka.KafkaJSONMessageDecoder",
	} {
		if sc[k] != want {
			t.Errorf("streamConfigs %s = %q, want %q", k, sc[k], want)
		}
	}
	named := append(append([]string{}, c.TableIndexConfig.InvertedIndexColumns...), c.TableIndexConfig.NoDictionaryColumns...)
	for _, f := range c.FieldConfigList {
		named = append(named, f.Name)
		if f.EncodingType != "RAW" {
			t.Errorf("fieldConfigList %s: encoding %q, want RAW", f.Name, f.EncodingType)
		}
	}
	for _, col := range named {
		if _, ok := s.Columns[col]; !ok {
			t.Errorf("table config names column %s, which the schema lacks", col)
		}
	}
	noDict := map[string]bool{}
	for _, col := range c.TableIndexConfig.NoDictionaryColumns {
		noDict[col] = true
	}
	for _, col := range []string{"state", "score_histogram", "feature_psi", "feature_default_rate", "feature_js"} {
		if !noDict[col] {
			t.Errorf("%s is not in noDictionaryColumns: large unique strings do not belong in a dictionary", col)
		}
	}

	// maxLength: Pinot truncates longer strings (default 512), which would
	// corrupt state. Check against a row of a model with 200 features.
	b, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Dims []fieldSpec `json:"dimensionFieldSpecs"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	rec, err := wideRow(200).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rec, &obj); err != nil {
		t.Fatal(err)
	}
	for _, d := range raw.Dims {
		v, _ := obj[d.Name].(string)
		limit := d.MaxLength
		if limit == 0 {
			limit = 512
		}
		if d.Name == "state" {
			t.Logf("state of a 200-feature row: %d bytes (maxLength %d)", len(v), limit)
		}
		if len(v) > limit/4 { // headroom for longer names and more features
			t.Errorf("column %s: a 200-feature row writes %d bytes, maxLength %d leaves less than 4× headroom", d.Name, len(v), limit)
		}
	}
}

type wideCatalog struct{ features int }

func (c wideCatalog) Model(string, string) core.ModelInfo {
	base := &core.Baseline{Score: core.Bins{Edges: make([]float64, 21), Fractions: make([]float64, 20)}, Features: map[string]core.Bins{}}
	for i := range base.Score.Edges {
		base.Score.Edges[i] = float64(i) / 20
	}
	for i := range base.Score.Fractions {
		base.Score.Fractions[i] = 1.0 / 20
	}
	for f := 0; f < c.features; f++ {
		base.Features[fmt.Sprintf("feature_with_a_long_name_%03d", f)] = base.Score
	}
	return core.ModelInfo{Threshold: 0.5, Baseline: base}
}

// wideRow is a labelled row of a model with n features, all drifting.
func wideRow(n int) core.Row {
	a := core.NewAggregator(core.AggregatorConfig{}, wideCatalog{n})
	k := core.Key{ModelKey: core.ModelKey{Model: "wide", Version: "v1", Variant: "a"}, Minute: 0}
	for i := 0; i < 5000; i++ {
		p := core.Prediction{LatencyMs: float64(i%1000) / 7, Score: float64(i%101) / 100, Features: make([]core.Feature, 0, n)}
		for f := 0; f < n; f++ {
			p.Features = append(p.Features, core.Feature{Name: fmt.Sprintf("feature_with_a_long_name_%03d", f), Value: float64((i*(f+1))%100) / 100})
		}
		id := fmt.Sprint(i)
		a.AddPrediction(id, k, int64(i), &p, core.Source{Offset: -1})
		a.AddLabel(id, float64(i%2), int64(i), core.Source{Offset: -1})
	}
	return a.Flush()[0]
}

// TestLaterRevisionWins: with the deployed comparison column, an older
// version of a row ingested after a newer one (a replay, a restarted
// publisher) does not replace it.
func TestLaterRevisionWins(t *testing.T) {
	a := core.NewAggregator(core.AggregatorConfig{}, wideCatalog{1})
	k := core.Key{ModelKey: core.ModelKey{Model: "m", Version: "v1", Variant: "a"}, Minute: 0}
	var versions []core.Row
	for i := 0; i < 3; i++ {
		a.AddPrediction(fmt.Sprint(i), k, int64(i), &core.Prediction{Score: 0.5}, core.Source{Offset: -1})
		versions = append(versions, a.Flush()[0])
	}
	for i := 1; i < len(versions); i++ {
		if versions[i].Revision() <= versions[i-1].Revision() {
			t.Fatalf("revision %d after %d: not increasing", versions[i].Revision(), versions[i-1].Revision())
		}
	}
	b, s := seed(t, []core.Row{versions[0], versions[2]})
	rec, err := versions[1].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ingest(rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Minutes(context.Background(), core.Query{Model: "m", FromMs: 0, ToMs: core.MinuteMs})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Requests != 3 {
		t.Fatalf("rows %+v, want the one row with 3 requests", got)
	}
}

// TestReservedWordsAreQuoted: the stand-in, like Pinot's Calcite parser,
// rejects reserved words as bare column names, so the conformance run
// proves the adapter quotes them.
func TestReservedWordsAreQuoted(t *testing.T) {
	b, _ := seed(t, nil)
	for _, sql := range []string{
		"SELECT model FROM model_minute WHERE minute >= 0 LIMIT 1",
		"SELECT precision FROM model_minute LIMIT 1",
	} {
		conn, err := pinot.NewFromBrokerList([]string{b.URL})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := conn.ExecuteSQL(pinotstore.Table, sql)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Exceptions) == 0 || !strings.Contains(resp.Exceptions[0].Message, "reserved") {
			t.Errorf("%s: exceptions %v, want a reserved keyword error", sql, resp.Exceptions)
		}
	}
}
