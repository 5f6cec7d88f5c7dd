package config

import (
	"flag"
	"strings"
	"testing"
)

func TestParseEnvOverride(t *testing.T) {
	env := map[string]string{"TRIBUTARY_KAFKA_BROKERS": "env:9092", "TRIBUTARY_LOG_LEVEL": "debug"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name        string
		args        []string
		wantBrokers string
		wantLevel   string
	}{
		{name: "env applies", args: nil, wantBrokers: "env:9092", wantLevel: "debug"},
		{name: "flag wins", args: []string{"--kafka-brokers", "flag:9092"}, wantBrokers: "flag:9092", wantLevel: "debug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Common{KafkaBrokers: "default:9092", AdminAddr: ":8081", LogLevel: "info"}
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			c.Register(fs, false)
			if err := Parse(fs, tt.args, lookup); err != nil {
				t.Fatal(err)
			}
			if c.KafkaBrokers != tt.wantBrokers || c.LogLevel != tt.wantLevel {
				t.Fatalf("got brokers %q level %q, want %q %q", c.KafkaBrokers, c.LogLevel, tt.wantBrokers, tt.wantLevel)
			}
		})
	}
}

func TestParseBadEnvNamesVariable(t *testing.T) {
	var n int
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.IntVar(&n, "max-rows", 1, "")
	err := Parse(fs, nil, func(k string) (string, bool) { return "many", k == "TRIBUTARY_MAX_ROWS" })
	if err == nil || !strings.Contains(err.Error(), "TRIBUTARY_MAX_ROWS") {
		t.Fatalf("want error naming TRIBUTARY_MAX_ROWS, got %v", err)
	}
}

func TestValidateNamesField(t *testing.T) {
	ok := Common{KafkaBrokers: "a:1", AdminAddr: ":1", GRPCAddr: ":2", LogLevel: "info"}
	tests := []struct {
		name  string
		edit  func(*Common)
		field string
	}{
		{"no brokers", func(c *Common) { c.KafkaBrokers = " , " }, "kafka-brokers"},
		{"bad broker", func(c *Common) { c.KafkaBrokers = "nohost" }, "kafka-brokers"},
		{"bad admin", func(c *Common) { c.AdminAddr = "8081" }, "admin-addr"},
		{"bad grpc", func(c *Common) { c.GRPCAddr = "x" }, "grpc-addr"},
		{"bad level", func(c *Common) { c.LogLevel = "loud" }, "log-level"},
		{"bad otlp", func(c *Common) { c.OTLPEndpoint = "collector" }, "otlp-endpoint"},
	}
	if err := ok.Validate(true); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate(true)
			if err == nil || !strings.HasPrefix(err.Error(), tt.field) {
				t.Fatalf("want error naming %s, got %v", tt.field, err)
			}
		})
	}
}
