package offline_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/offline"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/spine"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// labelEvent is a Debezium change event of public.labels as ingest writes it.
func labelEvent(op, after string, lsn int) []byte {
	if after == "" {
		after = "null"
	}
	return fmt.Appendf(nil, `{"before":null,"after":%s,"source":{"version":"tributary","connector":"postgresql","name":"tributary","ts_ms":%d,"snapshot":"false","db":"tributary","sequence":"[\"%d\",\"%d\"]","schema":"public","table":"labels","txId":77,"lsn":%d},"op":"%s","ts_ms":%d}`,
		after, ms(time.Hour), lsn, lsn, lsn, op, ms(time.Hour))
}

// predictionArchive writes an archive with predictions of two models,
// labels on both label sources and clicks for the user_clicks view.
func predictionArchive(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	url := "file://" + t.TempDir()
	arc, err := archive.Create(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = arc.Close() }()
	// Records arrive in offset order, at the given times (clicks, 10 ms
	// after their event time) or at t0 + offset ms.
	writeAt := func(topic string, arrivals []int64, values ...[]byte) {
		t.Helper()
		var rows []archive.Row
		for i, v := range values {
			at := ms(time.Duration(i) * time.Millisecond)
			if arrivals != nil {
				at = arrivals[i]
			}
			rows = append(rows, archive.Row{Topic: topic, Offset: int64(i), Value: v, ArrivalMs: at})
		}
		if _, err := arc.WriteFile(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	write := func(topic string, values ...[]byte) { t.Helper(); writeAt(topic, nil, values...) }
	pred := func(p predlog.Prediction) []byte {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	u1, u2 := map[string]string{"user_id": "u1"}, map[string]string{"user_id": "u2"}
	write(predlog.PredictionsTopic,
		pred(predlog.Prediction{PredictionID: "p1", Model: "fraud", Version: "1", Variant: "a", Role: predlog.RoleServed, EntityKeys: u1,
			Features: map[string]float64{"amount": 10, "clicks": 0}, Defaulted: []string{"clicks"}, Outputs: map[string]float64{"score": 0.9}, TimeMs: ms(time.Minute)}),
		pred(predlog.Prediction{PredictionID: "s1", ParentID: "p1", Model: "fraud", Version: "2", Variant: "b", Role: predlog.RoleShadow, EntityKeys: u1,
			Features: map[string]float64{"amount": 10, "clicks": 0}, Defaulted: []string{"clicks"}, Outputs: map[string]float64{"score": 0.7}, TimeMs: ms(time.Minute)}),
		pred(predlog.Prediction{PredictionID: "p2", Model: "fraud", Version: "2", Variant: "b", Role: predlog.RoleCanary, EntityKeys: u2,
			Features: map[string]float64{"amount": 20, "clicks": 1}, Outputs: map[string]float64{"score": 0.1}, TimeMs: ms(2 * time.Minute)}),
		pred(predlog.Prediction{PredictionID: "p4", Model: "fraud", Version: "1", Variant: "a", Role: predlog.RoleServed, EntityKeys: u1,
			Features: map[string]float64{"amount": 30, "clicks": 3}, Outputs: map[string]float64{"score": 0.5}, TimeMs: ms(3 * time.Minute)}),
		pred(predlog.Prediction{PredictionID: "p5", Model: "fraud", Version: "1", Variant: "a", Role: predlog.RoleServed, EntityKeys: u2,
			Features: map[string]float64{"amount": 40, "clicks": 0}, Outputs: map[string]float64{"score": 0.2}, TimeMs: ms(10 * time.Minute)}),
		pred(predlog.Prediction{PredictionID: "c1", Model: "churn", Version: "1", Role: predlog.RoleServed, EntityKeys: u1, TimeMs: ms(time.Minute)}),
		pred(predlog.Prediction{PredictionID: "c2", Model: "churn", Version: "1", Role: predlog.RoleServed, EntityKeys: u2, TimeMs: ms(2 * time.Minute)}),
	)
	label := func(id string, v float64, at time.Duration) []byte {
		return pred2(t, predlog.Label{PredictionID: id, Value: v, TimeMs: ms(at)})
	}
	write(predlog.LabelsTopic,
		label("p2", 0, 150*time.Second),
		label("p4", 1, 20*time.Minute), // after --until: joined, label_time_ms says so
		[]byte(`{"prediction_id":`),    // undecodable: skipped, counted
		label("p2", 1, 30*time.Minute), // a later second label: the earliest is kept
	)
	labeledAt := t0.Add(90 * time.Second).Format(time.RFC3339Nano)
	write("cdc.public.labels",
		labelEvent("c", `{"prediction_id":"p1","is_fraud":true,"labeled_at":"`+labeledAt+`"}`, 100),
		labelEvent("d", "", 200), // a delete retracts nothing
		labelEvent("c", `{"prediction_id":"p1","is_fraud":false,"labeled_at":"`+labeledAt+`"}`, 100), // re-sent after a restart: dropped by LSN
	)
	click := func(user string, at time.Duration) []byte {
		return fmt.Appendf(nil, `{"user_id":%q,"ts_ms":%d}`, user, ms(at))
	}
	clicks := []time.Duration{30 * time.Second, 50 * time.Second, time.Minute, 150 * time.Second}
	writeAt("events.clicks", []int64{ms(clicks[0] + 10*time.Millisecond), ms(clicks[1] + 10*time.Millisecond), ms(clicks[2] + 10*time.Millisecond), ms(clicks[3] + 10*time.Millisecond)},
		click("u1", clicks[0]), click("u1", clicks[1]), click("u2", clicks[2]), click("u1", clicks[3]))
	return url
}

func pred2(t *testing.T, l predlog.Label) []byte {
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, c := range recs[0] {
			m[c] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func predictionJob(url, out string) offline.PredictionSetJob {
	return offline.PredictionSetJob{
		Model: "fraud", Since: t0, Until: t0.Add(5 * time.Minute), Archive: url, Out: out,
		LabelsCDCTopic: "cdc.public.labels", LabelColumns: predlog.DefaultLabelColumns(),
	}
}

func TestPredictionTrainingSet(t *testing.T) {
	url := predictionArchive(t)
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "set.csv")
	j := predictionJob(url, out)
	j.Features, j.FeaturesDir = []string{"user_clicks:click_count_10m"}, featuresDir
	sum, err := offline.RunPredictionTrainingSet(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 3 || sum.Labeled != 3 || sum.LabeledLate != 1 || sum.Shadow != 1 || sum.BadLabels != 1 || sum.Features != 1 {
		t.Errorf("summary %+v, want 3 rows, 3 labeled (1 late), 1 shadow, 1 bad label, 1 feature", sum)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(string(b), "\n")
	if want := "user_id,event_timestamp,prediction_id,version,variant,role,served__amount,served__clicks,output__score,label,label_time_ms,user_clicks__click_count_10m,user_clicks__click_count_10m__status"; header != want {
		t.Errorf("header\n%s\nwant\n%s", header, want)
	}
	i64 := func(d time.Duration) string { return strconv.FormatInt(ms(d), 10) }
	want := []map[string]string{
		// Served, clicks defaulted (null), labeled through the CDC table.
		{"user_id": "u1", "event_timestamp": i64(time.Minute), "prediction_id": "p1", "version": "1", "variant": "a", "role": "served",
			"served__amount": "10", "served__clicks": "", "output__score": "0.9", "label": "1", "label_time_ms": i64(90 * time.Second),
			"user_clicks__click_count_10m": "2", "user_clicks__click_count_10m__status": "PRESENT"},
		// Canary, labeled on the labels topic (the earliest of two labels).
		{"user_id": "u2", "event_timestamp": i64(2 * time.Minute), "prediction_id": "p2", "version": "2", "variant": "b", "role": "canary",
			"served__amount": "20", "served__clicks": "1", "output__score": "0.1", "label": "0", "label_time_ms": i64(150 * time.Second),
			"user_clicks__click_count_10m": "1", "user_clicks__click_count_10m__status": "PRESENT"},
		// Its label arrived after --until: joined, with its time.
		{"user_id": "u1", "event_timestamp": i64(3 * time.Minute), "prediction_id": "p4", "version": "1", "variant": "a", "role": "served",
			"served__amount": "30", "served__clicks": "3", "output__score": "0.5", "label": "1", "label_time_ms": i64(20 * time.Minute),
			"user_clicks__click_count_10m": "3", "user_clicks__click_count_10m__status": "PRESENT"},
	}
	got := readCSV(t, out)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(got), len(want), b)
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("row %d (%s): %s = %q, want %q", i+1, want[i]["prediction_id"], k, got[i][k], v)
			}
		}
	}

	// The same as Parquet: typed columns, nulls where the CSV is empty.
	pq := filepath.Join(dir, "set.parquet")
	j.Out = pq
	if _, err := offline.RunPredictionTrainingSet(ctx, j); err != nil {
		t.Fatal(err)
	}
	tab, err := spine.Read(pq)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]spine.ColKind{"event_timestamp": spine.KindTimestamp, "served__clicks": spine.KindDouble, "label_time_ms": spine.KindInt64, "role": spine.KindString}
	for name, k := range kinds {
		c, ok := tab.Column(name)
		if !ok || tab.Kinds[c] != k {
			t.Errorf("parquet column %s: kind %v, want %v", name, tab.Kinds, k)
		}
	}
	if c, _ := tab.Column("served__clicks"); tab.Nulls == nil || !tab.Nulls[c] {
		t.Errorf("parquet: served__clicks of p1 (defaulted) is not null")
	}
	if tab.Len() != 3 || tab.EventMs(2) != ms(3*time.Minute) {
		t.Errorf("parquet: %d rows, last at %d; want 3, %d", tab.Len(), tab.EventMs(2), ms(3*time.Minute))
	}
}

func TestPredictionTrainingSetShadowAndNoLabels(t *testing.T) {
	url := predictionArchive(t)
	out := filepath.Join(t.TempDir(), "set.csv")
	j := predictionJob(url, out)
	j.IncludeShadow = true
	j.LabelsCDCTopic = "" // the labels topic only: p1's label is in the table
	sum, err := offline.RunPredictionTrainingSet(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	got := readCSV(t, out)
	if len(got) != 4 || sum.Rows != 4 {
		t.Fatalf("%d rows (summary %d), want 4 with the shadow", len(got), sum.Rows)
	}
	for _, r := range got[:2] {
		if r["label"] != "" || r["label_time_ms"] != "" {
			t.Errorf("%s (%s): label %q at %q, want none without the CDC table", r["prediction_id"], r["role"], r["label"], r["label_time_ms"])
		}
	}
	if s := got[1]; s["prediction_id"] != "s1" || s["role"] != "shadow" || s["output__score"] != "0.7" {
		t.Errorf("row 2 = %v, want the shadow s1", s)
	}

	// With the table, the shadow gets its parent's label.
	j.LabelsCDCTopic = "cdc.public.labels"
	if _, err := offline.RunPredictionTrainingSet(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if s := readCSV(t, out)[1]; s["label"] != "1" {
		t.Errorf("shadow s1: label %q, want its parent p1's 1", s["label"])
	}
}

func TestPredictionTrainingSetErrors(t *testing.T) {
	url := predictionArchive(t)
	out := filepath.Join(t.TempDir(), "set.csv")
	for _, tc := range []struct {
		name string
		edit func(*offline.PredictionSetJob)
		want []string
	}{
		{"unknown model", func(j *offline.PredictionSetJob) { j.Model = "nope" },
			[]string{`no predictions of model "nope"`, "7 predictions of other models (churn: 2, fraud: 5)"}},
		{"nothing in range", func(j *offline.PredictionSetJob) { j.Since, j.Until = t0.Add(time.Hour), t0.Add(2*time.Hour) },
			[]string{`no predictions of model "fraud"`, `5 of "fraud" outside the range`, "2 predictions of other models (churn: 2)"}},
		{"until before since", func(j *offline.PredictionSetJob) { j.Until = t0.Add(-time.Minute) },
			[]string{"--until 2026-12-01T09:59:00Z is not after --since 2026-12-01T10:00:00Z"}},
		{"bad out", func(j *offline.PredictionSetJob) { j.Out = "set.txt" }, []string{"--out", ".txt"}},
		{"features without dir", func(j *offline.PredictionSetJob) { j.Features = []string{"user_clicks:*"} }, []string{"--features-dir"}},
		{"unknown view", func(j *offline.PredictionSetJob) { j.Features, j.FeaturesDir = []string{"nope:*"}, featuresDir }, []string{"nope"}},
		{"join key not an entity key", func(j *offline.PredictionSetJob) {
			j.Features, j.FeaturesDir = []string{"merchant_fraud:labels_30d"}, featuresDir
		}, []string{"merchant_id", "entity keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := predictionJob(url, out)
			tc.edit(&j)
			_, err := offline.RunPredictionTrainingSet(context.Background(), j)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("err %v, want it to say %q", err, w)
				}
			}
		})
	}
}
