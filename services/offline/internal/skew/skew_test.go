package skew

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/modelrepo"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
)

var t0 = time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC).UnixMilli()

func click(off int64, user string, atMs int64) aggregate.Record {
	return aggregate.Record{Topic: "events.clicks", Offset: off, TimeMs: atMs,
		Value: fmt.Appendf(nil, `{"user_id":%q,"page":"/","ts_ms":%d}`, user, atMs)}
}

func pred(id string, keys map[string]string, atMs int64, served float64, defaulted ...string) predlog.Prediction {
	return predlog.Prediction{PredictionID: id, Model: "m", Version: "1", Role: predlog.RoleServed, EntityKeys: keys,
		Features: map[string]float64{"clicks": served, "amount": 5}, Defaulted: defaulted, TimeMs: atMs}
}

func TestEqualInFlightDifferDefaultedAndSkipped(t *testing.T) {
	views, err := featurespec.LoadDir("../../../../examples/fraud/features")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := modelrepo.ParseConfig([]byte(`name: m
format: logistic
inputs:
  - {name: clicks, feature: "user_clicks:click_count_10m"}
  - {name: amount, source: request}
`))
	if err != nil {
		t.Fatal(err)
	}
	u1 := map[string]string{"user_id": "u1"}
	rep, err := Compute(t.Context(), Request{
		Views:   views,
		Configs: map[string]*modelrepo.Config{"": cfg},
		History: pointintime.Records{click(0, "u1", t0), click(1, "u1", t0+1000), click(2, "u1", t0+2000)},
		Predictions: []predlog.Prediction{
			pred("equal", u1, t0+1500, 2),
			// The click that arrived 10 ms before had not landed: served 2,
			// offline 3 at T, 2 at T-25ms.
			pred("inflight", u1, t0+2010, 2),
			pred("differ", u1, t0+3000, 7),
			pred("defaulted", u1, t0+3000, 0, "clicks"),
			pred("nokey", map[string]string{"merchant_id": "x"}, t0+3000, 3),
		},
		Examples: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Predictions != 4 || rep.Skipped != 1 {
		t.Errorf("predictions %d skipped %d, want 4 and 1 (no user_id)", rep.Predictions, rep.Skipped)
	}
	if len(rep.Features) != 1 {
		t.Fatalf("features %+v, want the one featureserver input", rep.Features)
	}
	f := rep.Features[0]
	want := Feature{Input: "clicks", Ref: "user_clicks:click_count_10m", Compared: 3, Equal: 1, InFlight: 1, Differ: 1, Defaulted: 1,
		MaxDiff: 4, MaxLag: 25 * time.Millisecond}
	f.Examples, want.Examples = nil, nil
	if fmt.Sprintf("%+v", f) != fmt.Sprintf("%+v", want) {
		t.Errorf("report\n got %+v\nwant %+v", f, want)
	}
	if ex := rep.Features[0].Examples; len(ex) != 1 || ex[0].PredictionID != "differ" || ex[0].Served != 7 || ex[0].Offline != 3 {
		t.Errorf("examples %+v, want the differing prediction (served 7, offline 3)", ex)
	}
	if rep.Differ() != 1 || !strings.Contains(rep.String(), "user_clicks:click_count_10m") {
		t.Errorf("Differ %d, table:\n%s", rep.Differ(), rep)
	}
}

func TestNoFeatureInputs(t *testing.T) {
	cfg, err := modelrepo.ParseConfig([]byte("name: m\nformat: logistic\ninputs:\n  - {name: amount, source: request}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compute(t.Context(), Request{Configs: map[string]*modelrepo.Config{"": cfg}, History: pointintime.Records{}})
	if err == nil || !strings.Contains(err.Error(), "no input fetched from the featureserver") {
		t.Fatalf("err %v", err)
	}
}
