package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestCollectorCarriesTraces: every Tributary service of docker-compose.yml
// sends OTLP to the collector's gRPC receiver, whose traces pipeline
// receives OTLP and exports to a trace store that is itself a compose
// service (Jaeger, whose UI port is published).
func TestCollectorCarriesTraces(t *testing.T) {
	c := loadCompose(t)
	coll, ok := c.Services["otel-collector"]
	if !ok {
		t.Fatal("docker-compose.yml has no otel-collector")
	}
	mounted := ""
	for _, v := range coll.Volumes {
		if strings.HasPrefix(v, "./deploy/otel/") {
			mounted = strings.TrimPrefix(strings.SplitN(v, ":", 2)[0], "./")
		}
	}
	if mounted == "" {
		t.Fatalf("otel-collector mounts no config from deploy/otel: %v", coll.Volumes)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, mounted))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Receivers struct {
			OTLP struct {
				Protocols struct {
					GRPC struct{ Endpoint string } `yaml:"grpc"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
		Exporters map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers []string `yaml:"receivers"`
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", mounted, err)
	}
	_, grpcPort, err := net.SplitHostPort(cfg.Receivers.OTLP.Protocols.GRPC.Endpoint)
	if err != nil {
		t.Fatalf("%s: OTLP gRPC receiver endpoint %q: %v", mounted, cfg.Receivers.OTLP.Protocols.GRPC.Endpoint, err)
	}
	for name := range tributaryServices() {
		if got, want := c.Services[name].Environment["TRIBUTARY_OTLP_ENDPOINT"], "otel-collector:"+grpcPort; got != want {
			t.Errorf("%s: TRIBUTARY_OTLP_ENDPOINT=%q, want %q", name, got, want)
		}
	}
	traces, ok := cfg.Service.Pipelines["traces"]
	if !ok || !slices.Contains(traces.Receivers, "otlp") {
		t.Fatalf("%s: no traces pipeline receiving OTLP: %+v", mounted, cfg.Service.Pipelines)
	}
	stored := false
	for _, e := range traces.Exporters {
		host, _, err := net.SplitHostPort(cfg.Exporters[e].Endpoint)
		if err != nil || !strings.HasPrefix(e, "otlp") {
			continue
		}
		store, ok := c.Services[host]
		if !ok {
			t.Errorf("%s: traces exporter %s sends to %s, not a compose service", mounted, e, host)
			continue
		}
		if _, dep := coll.DependsOn[host]; !dep {
			t.Errorf("otel-collector does not depend on %s", host)
		}
		stored = stored || slices.ContainsFunc(store.Ports, func(p string) bool { return strings.HasPrefix(p, `16686:`) })
	}
	if !stored {
		t.Errorf("%s: the traces pipeline exports %v, none to a trace store with a published UI", mounted, traces.Exporters)
	}
}
