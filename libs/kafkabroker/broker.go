// Package kafkabroker runs the embedded Kafka-protocol broker (kfake) that
// stands in for Apache Kafka in `tributary dev` and in tests. It listens on a
// real TCP port on 127.0.0.1, so kcat and any Kafka client can use it.
package kafkabroker

import (
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures the embedded broker.
type Config struct {
	// Port to listen on, on 127.0.0.1; 0 picks a free port.
	Port int
	// Partitions is the partition count of auto-created topics.
	Partitions int
	// DataDir persists the log when set; empty keeps everything in memory.
	DataDir string
	// Topics are created at start with Partitions partitions.
	Topics []string
}

// DefaultConfig listens on the Kafka port with 4 partitions per topic.
func DefaultConfig() Config { return Config{Port: 9092, Partitions: 4} }

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("port: %d is not a TCP port", c.Port)
	}
	if c.Partitions < 1 {
		return fmt.Errorf("partitions: %d, want at least 1", c.Partitions)
	}
	return nil
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// Start starts a broker; Close stops it.
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ClusterID("tributary-dev"),
	}
	if cfg.Port != 0 {
		opts = append(opts, kfake.Ports(cfg.Port))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(cfg.Partitions), cfg.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on port %d: %w", cfg.Port, err)
	}
	b := &Broker{cluster: c, addr: c.ListenAddrs()[0]}
	if log != nil {
		log.Info("embedded kafka listening", "addr", b.addr, "partitions", cfg.Partitions)
	}
	return b, nil
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker.
func (b *Broker) Close() { b.cluster.Close() }
