package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// KafkaEnv names a real Kafka cluster (comma-separated bootstrap brokers,
// e.g. the one `make infra-up` starts) that Kafka and KafkaProcess hand
// to tests instead of starting the embedded broker.
const KafkaEnv = "TRIBUTARY_TEST_KAFKA_BROKERS"

// RealKafka reports the brokers of the real Kafka cluster named by
// KafkaEnv, or nil when tests use the embedded broker.
func RealKafka() []string {
	var out []string
	for _, b := range strings.Split(os.Getenv(KafkaEnv), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// realKafkaMu serialises the tests of one package that take the real
// cluster; packages must run one at a time (go test -p 1), as
// deploy/local/test-infra.sh does.
var realKafkaMu sync.Mutex

// realKafka hands the test the real cluster in the state a fresh embedded
// broker would be in: every topic and consumer group of earlier tests
// deleted. Auto-created topics get the cluster's num.partitions (4 on the
// cluster of deploy/local/infra.sh), not partitions: Kafka cannot change
// that setting at run time, so a test that depends on a topic's partition
// count creates the topic itself (kafka.EnsureTopics). The
// services' topic names (features.tiles, predictions, ...) and group ids
// are fixed by the contracts, so tests cannot be kept apart by names; they
// take the cluster in turn instead.
func realKafka(t testing.TB, brokers []string) string {
	t.Helper()
	realKafkaMu.Lock()
	t.Cleanup(realKafkaMu.Unlock)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := resetKafka(ctx, brokers); err != nil {
		t.Fatalf("reset the real Kafka at %s (%s): %v", strings.Join(brokers, ","), KafkaEnv, err)
	}
	return brokers[0]
}

// resetKafka deletes every topic not internal to Kafka and every consumer
// group and waits until the cluster no longer lists them.
func resetKafka(ctx context.Context, brokers []string) error {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 20 * time.Second}
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	// Groups first: a group whose members are gone is empty and deletable.
	for _, b := range md.Brokers {
		addr := kafkago.TCP(net.JoinHostPort(b.Host, strconv.Itoa(b.Port)))
		lg, err := client.ListGroups(ctx, &kafkago.ListGroupsRequest{Addr: addr})
		if err != nil {
			return fmt.Errorf("list groups on broker %d: %w", b.ID, err)
		}
		if lg.Error != nil {
			return fmt.Errorf("list groups on broker %d: %w", b.ID, lg.Error)
		}
		var ids []string
		for _, g := range lg.Groups {
			ids = append(ids, g.GroupID)
		}
		if len(ids) == 0 {
			continue
		}
		dg, err := client.DeleteGroups(ctx, &kafkago.DeleteGroupsRequest{Addr: addr, GroupIDs: ids})
		if err != nil {
			return fmt.Errorf("delete groups %v: %w", ids, err)
		}
		for id, err := range dg.Errors {
			if err != nil && !errors.Is(err, kafkago.GroupIdNotFound) {
				return fmt.Errorf("delete group %s: %w (a consumer of an earlier test still running?)", id, err)
			}
		}
	}
	topics := userTopics(md)
	if len(topics) > 0 {
		dt, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics})
		if err != nil {
			return fmt.Errorf("delete topics %v: %w", topics, err)
		}
		for name, err := range dt.Errors {
			if err != nil && !errors.Is(err, kafkago.UnknownTopicOrPartition) {
				return fmt.Errorf("delete topic %s: %w", name, err)
			}
		}
	}
	for {
		md, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
		if err == nil && len(userTopics(md)) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			left := []string{}
			if md != nil {
				left = userTopics(md)
			}
			return fmt.Errorf("topics %v still listed after deletion: %w", left, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// userTopics lists the topics of md that are not Kafka's own.
func userTopics(md *kafkago.MetadataResponse) []string {
	var out []string
	for _, tp := range md.Topics {
		if !tp.Internal && !strings.HasPrefix(tp.Name, "__") {
			out = append(out, tp.Name)
		}
	}
	slices.Sort(out)
	return out
}
