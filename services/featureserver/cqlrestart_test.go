package featureserver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver"
)

// restartEnv names the script that stops and starts the real CQL server
// (deploy/local/infra.sh; make test-infra sets it).
const restartEnv = "TRIBUTARY_TEST_CQL_RESTART"

// TestCQLServerRestartAnswersUnavailableThenRecovers: while the CQL server
// is down the featureserver answers UNAVAILABLE, never a wrong value (no
// NOT_FOUND for a feature it holds), and once the server is back it serves
// the same values again without being restarted itself.
func TestCQLServerRestartAnswersUnavailableThenRecovers(t *testing.T) {
	script, hosts := os.Getenv(restartEnv), os.Getenv("TRIBUTARY_SCYLLA_HOSTS")
	if script == "" || hosts == "" {
		t.Skipf("needs a real CQL server it may restart: set TRIBUTARY_SCYLLA_HOSTS and %s (make test-infra does)", restartEnv)
	}
	infra := func(action string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, action)
		cmd.Env = append(os.Environ(), "TRIBUTARY_INFRA_ONLY=cassandra")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", script, action, err, out)
		}
	}
	// Whatever happens, the server is up again for the tests after this one.
	t.Cleanup(func() { infra("up") })

	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	cfg := config(t, brokers, featuresDir, t.TempDir())
	cfg.Store, cfg.ScyllaHosts, cfg.ScyllaConsistency = featureserver.StoreScylla, hosts, "ONE"
	cfg.ScyllaKeyspace = fmt.Sprintf("restart_%d", time.Now().UnixNano()%1_000_000_000)
	fs := start(t, cfg, &clock{now: now})
	var msgs []kafka.Message
	for _, tl := range clickTiles("u1", 60_000) {
		msgs = append(msgs, tileMsg(t, tl))
	}
	produce(t, brokers, msgs...)
	req := &featuresv1.GetOnlineFeaturesRequest{
		Features: []string{"clicks:count_10m", "clicks:last_page"},
		Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u1"}}},
	}
	wants := [][]want{{{double: 1, status: present, event: 60_000}, {str: "p60000", status: present, event: 60_000}}}
	// ask answers nil for the right values, errUnavailable for UNAVAILABLE,
	// and any other answer as a failure of the test.
	errUnavailable := errors.New("unavailable")
	ask := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := fs.client.GetOnlineFeatures(ctx, req)
		if status.Code(err) == codes.Unavailable {
			return errUnavailable
		}
		if err != nil {
			return fmt.Errorf("%v (want the values or UNAVAILABLE)", err)
		}
		if err := check(resp, wants); err != nil {
			return fmt.Errorf("wrong values: %v", err)
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, "the tiles served from the CQL server", ask)

	infra("down")
	testutil.Eventually(t, 30*time.Second, "UNAVAILABLE while the CQL server is down", func() error {
		err := ask()
		if errors.Is(err, errUnavailable) {
			return nil
		}
		if err != nil && !strings.Contains(err.Error(), "UNAVAILABLE") {
			t.Fatalf("with the CQL server down: %v", err)
		}
		return errors.New("still answered with values: the store read nothing from a stopped server?")
	})
	infra("up")
	testutil.Eventually(t, 90*time.Second, "the same values again after the CQL server came back", func() error {
		err := ask()
		if err != nil && !errors.Is(err, errUnavailable) {
			t.Fatalf("after the restart: %v", err)
		}
		return err
	})
}
