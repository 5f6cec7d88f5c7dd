package testutil

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
func RealKafka() []string { return SplitBrokers(os.Getenv(KafkaEnv)) }

// SplitBrokers splits a comma-separated broker list, dropping empty items.
func SplitBrokers(list string) []string {
	var out []string
	for _, b := range strings.Split(list, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// realKafkaMu serialises the tests of one package that take the real
// cluster (realKafkaHolder is the one holding it, which may take it again);
// packages must run one at a time (go test -p 1), as
// deploy/local/test-infra.sh does.
var (
	realKafkaMu     sync.Mutex
	realKafkaHolder struct {
		sync.Mutex
		t testing.TB
	}
)

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
	realKafkaHolder.Lock()
	held := realKafkaHolder.t == t
	realKafkaHolder.Unlock()
	if !held {
		realKafkaMu.Lock()
		realKafkaHolder.Lock()
		realKafkaHolder.t = t
		realKafkaHolder.Unlock()
		t.Cleanup(func() {
			realKafkaHolder.Lock()
			realKafkaHolder.t = nil
			realKafkaHolder.Unlock()
			realKafkaMu.Unlock()
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := resetKafka(ctx, brokers); err != nil {
		t.Fatalf("reset the real Kafka at %s (%s): %v", strings.Join(brokers, ","), KafkaEnv, err)
	}
	if err := setBrokerConfigs(ctx, brokers, quickCompaction, kafkago.ConfigOperationSet); err != nil {
		t.Fatalf("real Kafka at %s: %v", strings.Join(brokers, ","), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := setBrokerConfigs(ctx, brokers, quickCompaction, kafkago.ConfigOperationDelete); err != nil {
			t.Errorf("real Kafka at %s: %v", strings.Join(brokers, ","), err)
		}
	})
	return brokers[0]
}

// quickCompaction makes the brokers roll a segment of every topic each
// second and clean a compacted one as soon as 1% of it is dirty, so the log
// cleaner really compacts features.tiles (and the other compacted topics)
// while a test runs, and restores read compacted logs. A test's cleanup
// removes the settings again (the demo runs with Kafka's defaults).
var quickCompaction = map[string]string{
	"log.roll.ms":                     "1000",
	"log.cleaner.min.cleanable.ratio": "0.01",
}

// setBrokerConfigs sets (or deletes) the dynamic configs of every broker.
func setBrokerConfigs(ctx context.Context, brokers []string, configs map[string]string, op kafkago.ConfigOperation) error {
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 20 * time.Second, Transport: tr}
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	var cfgs []kafkago.IncrementalAlterConfigsRequestConfig
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		cfgs = append(cfgs, kafkago.IncrementalAlterConfigsRequestConfig{Name: k, Value: configs[k], ConfigOperation: op})
	}
	for _, b := range md.Brokers {
		resp, err := client.IncrementalAlterConfigs(ctx, &kafkago.IncrementalAlterConfigsRequest{
			Resources: []kafkago.IncrementalAlterConfigsRequestResource{{
				ResourceType: kafkago.ResourceTypeBroker, ResourceName: strconv.Itoa(b.ID), Configs: cfgs,
			}},
		})
		if err == nil {
			for _, r := range resp.Resources {
				err = errors.Join(err, r.Error)
			}
		}
		if err != nil {
			return fmt.Errorf("broker %d configs %v (op %d): %w", b.ID, configs, op, err)
		}
	}
	return nil
}

// resetKafka deletes every topic not internal to Kafka and every consumer
// group and waits until the cluster no longer lists them.
func resetKafka(ctx context.Context, brokers []string) error {
	// A transport of its own: kafka-go's default one answers metadata
	// requests from a cache shared by the whole test binary.
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 20 * time.Second, Transport: tr}
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
	topics, err := listTopics(ctx, brokers[0])
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
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
		left, err := listTopics(ctx, brokers[0])
		if err == nil && len(left) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v still listed after deletion (%v): %w", left, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// listTopics asks broker, on a connection of its own, for the topics that
// are not Kafka's own.
func listTopics(ctx context.Context, broker string) ([]string, error) {
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	parts, err := conn.ReadPartitions()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range parts {
		if !seen[p.Topic] && !strings.HasPrefix(p.Topic, "__") {
			seen[p.Topic] = true
			out = append(out, p.Topic)
		}
	}
	slices.Sort(out)
	return out, nil
}
