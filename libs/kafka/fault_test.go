package kafka

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
)

// Environment of the broker fault test: a three-node Kafka cluster and the
// script that kills and restarts its nodes (make test-infra sets both).
const (
	kafka3Env     = "TRIBUTARY_TEST_KAFKA3_BROKERS"
	kafka3CtlEnv  = "TRIBUTARY_TEST_KAFKA3_CONTROL"
	faultRecords  = 6000
	faultBatch    = 100
	killAtBatch   = 15
	returnAtBatch = 40
)

// TestBrokerKilledMidStreamLosesNothing: on three brokers, a topic with
// replication factor 3 (min.insync.replicas 2) written with acks=all; one
// broker is killed (SIGKILL) mid-stream and restarted later. Every record
// whose write was acknowledged is on the topic afterwards. A write that
// fails while leadership moves is retried by the caller, as services do
// (at least once: a retried batch may appear twice, never be missing).
func TestBrokerKilledMidStreamLosesNothing(t *testing.T) {
	brokers, script := testutil.SplitBrokers(os.Getenv(kafka3Env)), os.Getenv(kafka3CtlEnv)
	if len(brokers) < 3 || script == "" {
		t.Skipf("needs a three-broker Kafka it may kill: set %s and %s (make test-infra does)", kafka3Env, kafka3CtlEnv)
	}
	infra := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, args...)
		cmd.Env = append(os.Environ(), "TRIBUTARY_INFRA_ONLY=kafka3")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { infra("up") })
	ctx := testutil.Context(t, 4*time.Minute)
	topic := fmt.Sprintf("fault-%d", time.Now().UnixNano())
	if err := EnsureTopics(ctx, brokers, TopicSpec{Name: topic, Partitions: 6, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(ProducerConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	acked, failures := 0, 0
	for b := 0; b < faultRecords/faultBatch; b++ {
		switch b {
		case killAtBatch:
			infra("kill", "kafka3-2")
		case returnAtBatch:
			infra("up")
		}
		msgs := make([]Message, faultBatch)
		for i := range msgs {
			k := fmt.Sprintf("k%05d", b*faultBatch+i)
			msgs[i] = Message{Key: []byte(k), Value: []byte("v" + k)}
		}
		for {
			err := p.Write(ctx, msgs...)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("batch %d never acknowledged: %v", b, err)
			}
			failures++
			t.Logf("batch %d: %v (retrying)", b, err)
		}
		acked += len(msgs)
	}
	seen := map[string]bool{}
	n, err := ReadAll(ctx, brokers, topic, func(m Message) error {
		if string(m.Value) != "v"+string(m.Key) {
			return fmt.Errorf("record %s has value %q", m.Key, m.Value)
		}
		seen[string(m.Key)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range acked {
		if k := fmt.Sprintf("k%05d", i); !seen[k] {
			t.Fatalf("acknowledged record %s is missing after the broker was killed (%d records read)", k, n)
		}
	}
	t.Logf("%d records acknowledged, %d read (%d duplicates from retried batches), %d failed writes retried", acked, n, n-acked, failures)
}
