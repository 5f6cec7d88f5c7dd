package featureserver_test

import (
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// TestServesTheTilesOfACompactedTopic: features.tiles is compacted, and a
// featureserver starting with an empty store restores from what the log
// cleaner left of it, the last version of every tile. Many versions of the
// same tiles are written until the cleaner has removed some (segments roll
// every 100ms), then a fresh featureserver must serve the last version of
// each. Only a real Kafka compacts (make test-infra); the embedded broker
// keeps every record.
func TestServesTheTilesOfACompactedTopic(t *testing.T) {
	if len(testutil.RealKafka()) == 0 {
		t.Skipf("the embedded broker does not compact: set %s to a real Kafka (make infra-up; make test-infra)", testutil.KafkaEnv)
	}
	brokers := testutil.Kafka(t, 1)
	ctx := testutil.Context(t, 3*time.Minute)
	if err := kafka.EnsureTopics(ctx, []string{brokers}, kafka.TopicSpec{Name: tiles.Topic, Partitions: 1, Compacted: true}); err != nil {
		t.Fatal(err)
	}
	client := &kafkago.Client{Addr: kafkago.TCP(brokers), Transport: &kafkago.Transport{}}
	set := func(name, value string) kafkago.IncrementalAlterConfigsRequestConfig {
		return kafkago.IncrementalAlterConfigsRequestConfig{Name: name, Value: value, ConfigOperation: kafkago.ConfigOperationSet}
	}
	ac, err := client.IncrementalAlterConfigs(ctx, &kafkago.IncrementalAlterConfigsRequest{
		Resources: []kafkago.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: tiles.Topic,
			Configs: []kafkago.IncrementalAlterConfigsRequestConfig{
				set("segment.ms", "100"), set("min.cleanable.dirty.ratio", "0.01"), set("min.compaction.lag.ms", "0"),
			},
		}},
	})
	if err == nil {
		for _, r := range ac.Resources {
			err = r.Error
		}
	}
	if err != nil {
		t.Fatalf("make %s roll segments quickly: %v", tiles.Topic, err)
	}

	users := make([]string, 20)
	for i := range users {
		users[i] = fmt.Sprintf("u%02d", i)
	}
	// Round r is a click (60s + r ms) ago, on page "p<60000+r>": the same
	// tile keys every round, a new version of each.
	written, round := 0, 0
	testutil.Eventually(t, 2*time.Minute, "the log cleaner to compact "+tiles.Topic, func() error {
		round++
		var msgs []kafka.Message
		for _, u := range users {
			for _, tl := range clickTiles(u, int64(60_000+round)) {
				msgs = append(msgs, tileMsg(t, tl))
			}
		}
		produce(t, brokers, msgs...)
		written += len(msgs)
		n, err := kafka.ReadAll(ctx, []string{brokers}, tiles.Topic, func(kafka.Message) error { return nil })
		if err != nil {
			return err
		}
		if n >= written {
			return fmt.Errorf("%d records on the topic after %d rounds, all %d written", n, round, written)
		}
		t.Logf("%d rounds, %d records written, %d left by the cleaner", round, written, n)
		return nil
	})

	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	fs := start(t, config(t, brokers, featuresDir, t.TempDir()), &clock{now: now})
	req := &featuresv1.GetOnlineFeaturesRequest{Features: []string{"clicks:count_10m", "clicks:last_page"}}
	var wants [][]want
	ago := int64(60_000 + round)
	for _, u := range users {
		req.Entities = append(req.Entities, &featuresv1.EntityRow{JoinKeys: map[string]string{"user_id": u}})
		wants = append(wants, []want{
			{double: 1, status: present, event: ago},
			{str: fmt.Sprintf("p%d", ago), status: present, event: ago},
		})
	}
	testutil.Eventually(t, 30*time.Second, "the last version of every tile served after a restore from the compacted topic", func() error {
		resp, err := fs.client.GetOnlineFeatures(testutil.Context(t, 5*time.Second), req)
		if err != nil {
			return err
		}
		return check(resp, wants)
	})
}
