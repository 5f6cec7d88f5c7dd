package offline_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

const featuresDir = "../../examples/fraud/features"

func TestConfigValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*offline.Config)
		field string
	}{
		{"features", func(c *offline.Config) { c.Features = "" }, "features"},
		{"offline", func(c *offline.Config) { c.Offline = "/no/scheme" }, "offline"},
		{"topics", func(c *offline.Config) { c.Topics = "ok,not a topic" }, "topics"},
		{"labels cdc topic", func(c *offline.Config) { c.LabelsCDCTopic = "a/b" }, "labels-cdc-topic"},
		{"roll bytes", func(c *offline.Config) { c.RollBytes = 10 }, "roll-bytes"},
		{"roll interval", func(c *offline.Config) { c.RollInterval = time.Millisecond }, "roll-interval"},
		{"retention", func(c *offline.Config) { c.Retention = -time.Hour }, "retention"},
		{"compact interval", func(c *offline.Config) { c.CompactInterval = -time.Hour }, "compact-interval"},
		{"grpc", func(c *offline.Config) { c.Common.GRPCAddr = "x" }, "grpc-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := offline.DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
	if err := offline.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestArchivedTopics(t *testing.T) {
	c := offline.DefaultConfig()
	c.Topics = "audit,events.clicks"
	got := strings.Join(c.ArchivedTopics(nil), ",")
	if got != "audit,cdc.public.labels,events.clicks,labels,predictions" {
		t.Fatalf("topics %s", got)
	}
}

func testConfig(brokers, url string) offline.Config {
	c := offline.DefaultConfig()
	c.Common.KafkaBrokers = brokers
	c.Common.AdminAddr = "127.0.0.1:0"
	c.Common.GRPCAddr = "127.0.0.1:0"
	c.Common.LogLevel = "warn"
	c.Features = featuresDir
	c.Offline = url
	c.RollInterval = time.Second
	return c
}

func TestNewRejectsUnreachableArchive(t *testing.T) {
	c := testConfig("127.0.0.1:9", "s3://")
	_, err := offline.New(context.Background(), c, offline.Deps{})
	if err == nil || !strings.Contains(err.Error(), `"s3://"`) {
		t.Fatalf("New = %v, want an error naming the archive URL", err)
	}
}

// TestServiceArchivesSources runs the service against the embedded broker:
// the views' sources and the predictions land in the archive, and the
// admin and gRPC ports answer.
func TestServiceArchivesSources(t *testing.T) {
	ctx := testutil.Context(t, 90*time.Second)
	brokers := testutil.Kafka(t, 2)
	dir := t.TempDir()
	url := "file://" + filepath.Join(dir, "offline")
	svc, err := offline.New(ctx, testConfig(brokers, url), offline.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.RunService(t, "offline", svc)

	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{brokers}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []kafka.Message
	for i := range 50 {
		msgs = append(msgs,
			kafka.Message{Topic: "events.clicks", Key: []byte(fmt.Sprint("u", i%5)), Value: []byte(fmt.Sprintf(`{"user_id":"u%d","page":"/","ts_ms":%d}`, i%5, 1796119200000+i))},
			kafka.Message{Topic: "predictions", Key: []byte(fmt.Sprint("p", i)), Value: []byte(fmt.Sprintf(`{"id":"p%d"}`, i))})
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	arc, err := archive.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	testutil.Eventually(t, 60*time.Second, "50 clicks and 50 predictions archived", func() error {
		for _, topic := range []string{"events.clicks", "predictions"} {
			n := 0
			if err := arc.Scan(ctx, topic, func(r *archive.Row) error {
				if topic == "events.clicks" && r.EventMs < 1796119200000 {
					return fmt.Errorf("click %d/%d without its event time: %+v", r.Partition, r.Offset, r)
				}
				n++
				return nil
			}); err != nil {
				return err
			}
			if n != 50 {
				return fmt.Errorf("%s: %d rows archived", topic, n)
			}
		}
		return nil
	})
	resp, err := http.Get("http://" + svc.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "tributary_offline_rows") {
		t.Fatalf("/metrics lacks tributary_offline_rows:\n%s", body)
	}
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}
