package modelservertest_test

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/testutil"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/services/modelserver"
)

// expectV1 is version 1 of fraud_lr, computed from its definition.
func expectV1(count, sum, us, amount float64) float64 {
	z := -2.0 + 0.4*(count-1.2)/0.8 + 0.2*math.Log1p(sum) - 0.3*us + 0.5*math.Log1p(amount)
	return 1 / (1 + math.Exp(-z))
}

func TestExperimentSplitsStickyPerEntityWithCanaryAndShadow(t *testing.T) {
	e := startRepo(t, "testdata/experiments", nil)
	ctx := testutil.Context(t, 60*time.Second)
	const users = 400
	variants := map[string]string{}
	ids := map[string]string{} // prediction id → user
	for i := range users {
		u := fmt.Sprint("user-", i)
		resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": u}, Features: amount(50)})
		if err != nil {
			t.Fatal(err)
		}
		variants[u] = resp.GetVariant()
		ids[resp.GetPredictionId()] = u
		want := map[string]float64{"control": expectV1(0, 0, 0, 50), "treatment": expectV2(0, 0, 0, 50)}[resp.GetVariant()]
		if !near(resp.GetOutputs()["score"], want) {
			t.Fatalf("%s on %s: score %v, want %v", u, resp.GetVariant(), resp.GetOutputs()["score"], want)
		}
		if wantV := map[string]string{"control": "1", "treatment": "2"}[resp.GetVariant()]; resp.GetVersion() != wantV {
			t.Fatalf("variant %s served version %s", resp.GetVariant(), resp.GetVersion())
		}
	}
	n := 0
	for _, v := range variants {
		if v == "treatment" {
			n++
		}
	}
	// 30% of 400 users: binomial sd ≈ 9.2; ±4 sd.
	if n < 120-37 || n > 120+37 {
		t.Errorf("%d of %d users on treatment, want about 30%%", n, users)
	}
	// Sticky: the same user gets the same variant again.
	for i := range 50 {
		u := fmt.Sprint("user-", i)
		resp, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": u}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetVariant() != variants[u] {
			t.Errorf("%s moved from %s to %s", u, variants[u], resp.GetVariant())
		}
		ids[resp.GetPredictionId()] = u
	}
	// One feature fetch per request although the shadow model runs too.
	if got := e.peer.Calls(t); got != users+50 {
		t.Errorf("featureserver calls %d, want %d", got, users+50)
	}
	// A header pins a variant.
	pinned := metadata.AppendToOutgoingContext(ctx, "x-tributary-variant", "treatment")
	for i := range 20 {
		resp, err := e.serving().Predict(pinned, &servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": fmt.Sprint("user-", i)}})
		if err != nil || resp.GetVariant() != "treatment" {
			t.Fatalf("pinned treatment: %v %v", resp.GetVariant(), err)
		}
	}
	if _, err := e.serving().Predict(metadata.AppendToOutgoingContext(ctx, "x-tributary-variant", "nope"),
		&servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: map[string]string{"user_id": "u"}}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown pinned variant: %v, want NotFound", err)
	}

	// The log: every served prediction with its role, and one shadow record per unpinned request, never returned.
	recs, _ := readPredictions(t, e.kafka, 2*(users+50)+20)
	roles := map[string]int{}
	for _, r := range recs {
		roles[r.Role]++
		switch r.Role {
		case predlog.RoleShadow:
			if r.Variant != "xgb_shadow" || r.Model != "fraud_xgb" || r.Score <= 0 || r.Score >= 1 || r.Error != "" {
				t.Errorf("shadow record %+v", r)
			}
			if _, returned := ids[r.PredictionID]; returned {
				t.Errorf("shadow prediction %s was returned to a caller", r.PredictionID)
			}
			// Labels carry the id the caller got: the shadow record names it.
			if r.ParentID == "" || r.ParentID == r.PredictionID {
				t.Errorf("shadow prediction %s has parent_id %q, want the id returned for its request", r.PredictionID, r.ParentID)
			} else if _, returned := ids[r.ParentID]; !returned {
				t.Errorf("shadow prediction %s: parent_id %s is no served prediction", r.PredictionID, r.ParentID)
			}
		case predlog.RoleCanary:
			if r.Variant != "treatment" {
				t.Errorf("canary record on variant %s", r.Variant)
			}
		case predlog.RoleServed:
			if r.Variant == "treatment" && r.PredictionID != "" {
				if _, ok := ids[r.PredictionID]; ok {
					t.Errorf("unpinned treatment prediction %s logged as served, want canary", r.PredictionID)
				}
			}
		}
	}
	if roles[predlog.RoleShadow] != users+50 || roles[predlog.RoleCanary] < n {
		t.Errorf("roles in the log %v; want %d shadow, ≥ %d canary", roles, users+50, n)
	}
}

func TestEnsemblesCombineMembersWithOneFetch(t *testing.T) {
	e := startRepo(t, "testdata/experiments", nil)
	e.seedU1()
	ctx := testutil.Context(t, 20*time.Second)
	keys := map[string]string{"user_id": "u1"}
	lr, err := e.serving().Predict(metadata.AppendToOutgoingContext(ctx, "x-tributary-variant", "treatment"),
		&servingv1.PredictRequest{Model: "fraud_lr", EntityKeys: keys, Features: amount(120)})
	if err != nil {
		t.Fatal(err)
	}
	xgb, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_xgb", EntityKeys: keys, Features: amount(120)})
	if err != nil {
		t.Fatal(err)
	}
	sl, sx := lr.GetOutputs()["score"], xgb.GetOutputs()["score"]
	if !near(sl, expectV2(3, 250.5, 1, 120)) {
		t.Fatalf("fraud_lr v2 score %v", sl)
	}
	calls := e.peer.Calls(t)
	avg, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_ens", EntityKeys: keys, Features: amount(120)})
	if err != nil {
		t.Fatal(err)
	}
	if want := (sl + 3*sx) / 4; !near(avg.GetOutputs()["score"], want) {
		t.Errorf("average ensemble %v, want %v", avg.GetOutputs()["score"], want)
	}
	if got := e.peer.Calls(t); got != calls+1 {
		t.Errorf("ensemble made %d feature fetches, want 1", got-calls)
	}
	stack, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_stack", EntityKeys: keys, Features: amount(120)})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 / (1 + math.Exp(-(-2.5 + 2*sl + 3*sx))); !near(stack.GetOutputs()["score"], want) {
		t.Errorf("stacking ensemble %v, want %v", stack.GetOutputs()["score"], want)
	}
	// Defaults flow through: an unknown user defaults every fetched input of every member.
	d, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_ens", EntityKeys: map[string]string{"user_id": "nobody"}, Features: amount(1)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"txn_count_10m", "txn_sum_1h", "country_us"}; !slices.Equal(d.GetDefaultedFeatures(), want) {
		t.Errorf("ensemble defaulted %v, want %v", d.GetDefaultedFeatures(), want)
	}
}

func TestOverloadIsResourceExhausted(t *testing.T) {
	e := startRepo(t, "testdata/experiments", func(c *modelserver.Config) { c.MaxConcurrent = 1 })
	ctx := testutil.Context(t, 20*time.Second)
	e.peer.Link().Hold() // fraud_xgb waits up to 2s for features
	slow := make(chan error, 1)
	go func() {
		_, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_xgb", EntityKeys: map[string]string{"user_id": "u1"}})
		slow <- err
	}()
	e.peer.Link().WaitHeld(t, 5*time.Second)
	_, err := e.serving().Predict(ctx, &servingv1.PredictRequest{Model: "fraud_xgb", EntityKeys: map[string]string{"user_id": "u2"}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second request while one is in flight with limit 1: %v, want ResourceExhausted", err)
	}
	e.peer.Link().Release()
	if err := <-slow; err != nil {
		t.Errorf("slow request: %v", err)
	}
	if got := metricValue(t, e.svc.AdminAddr(), "tributary_modelserver_rejected_requests_total"); got != 1 {
		t.Errorf("rejected_requests_total = %v, want 1", got)
	}

}
