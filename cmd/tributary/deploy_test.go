package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/ingest"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/modelserver"
	"github.com/tributary-ml/tributary/services/offline"
)

const repoRoot = "../.."

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image       string                                `yaml:"image"`
	Build       *struct{ Context, Dockerfile string } `yaml:"build"`
	Command     any                                   `yaml:"command"`
	Environment map[string]string                     `yaml:"environment"`
	Ports       []string                              `yaml:"ports"`
	Volumes     []string                              `yaml:"volumes"`
	DependsOn   map[string]any                        `yaml:"depends_on"`
	Secrets     []string                              `yaml:"secrets"`
}

// serviceEntry is what the code says about one service.
type serviceEntry struct {
	flags     *flag.FlagSet
	admin     string
	grpc      string
	grpcFlags bool
	// validate validates the configuration the flags were parsed into.
	validate func() error
}

// tributaryServices maps compose service names to the flags their code
// registers and their default ports.
func tributaryServices() map[string]serviceEntry {
	out := map[string]serviceEntry{}
	// validate closures read the variables the flags write (a method value
	// would copy the configuration before parsing).
	add := func(name string, register func(*flag.FlagSet), validate func() error, admin, grpc string) {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		register(fs)
		out[name] = serviceEntry{flags: fs, admin: port(admin), grpc: port(grpc), grpcFlags: grpc != "", validate: validate}
	}
	in, fz, fs, ms, mt := ingest.DefaultConfig(), featurizer.DefaultConfig(), featureserver.DefaultConfig(), modelserver.DefaultConfig(), metrics.DefaultConfig()
	add("ingest", in.RegisterFlags, func() error { return in.Validate() }, in.Common.AdminAddr, "")
	add("featurizer", fz.RegisterFlags, func() error { return fz.Validate() }, fz.Common.AdminAddr, "")
	add("featureserver", fs.RegisterFlags, func() error { return fs.Validate() }, fs.Common.AdminAddr, fs.Common.GRPCAddr)
	add("modelserver", ms.RegisterFlags, func() error { return ms.Validate() }, ms.Common.AdminAddr, ms.Common.GRPCAddr)
	add("metrics", mt.RegisterFlags, func() error { return mt.Validate() }, mt.Common.AdminAddr, mt.Common.GRPCAddr)
	of := offline.DefaultConfig()
	add("offline", of.RegisterFlags, func() error { return of.Validate() }, of.Common.AdminAddr, of.Common.GRPCAddr)
	return out
}

func port(addr string) string {
	if addr == "" {
		return ""
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	return p
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// TestComposeMatchesCode cross-checks docker-compose.yml against the code:
// every Tributary service is there, runs its own binary, is configured only
// through environment variables its flags accept, listens on and publishes
// the ports of DESIGN.md §4, and mounts files that exist.
func TestComposeMatchesCode(t *testing.T) {
	c := loadCompose(t)
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range tributaryServices() {
		t.Run(name, func(t *testing.T) {
			cs, ok := c.Services[name]
			if !ok {
				t.Fatalf("service %s missing from docker-compose.yml", name)
			}
			if cs.Build == nil || cs.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("%s: not built from deploy/Dockerfile", name)
			}
			if fmt.Sprint(cs.Command) != fmt.Sprintf("[%s]", name) {
				t.Errorf("%s: command %v, want [%s]", name, cs.Command, name)
			}
			if !bytes.Contains(dockerfile, []byte("-o /out/"+name+" ")) {
				t.Errorf("deploy/Dockerfile does not build the %s binary", name)
			}
			envs := map[string]bool{}
			svc.flags.VisitAll(func(f *flag.Flag) { envs[config.EnvName(f.Name)] = true })
			for k := range cs.Environment {
				if !envs[k] {
					t.Errorf("%s: environment %s matches no flag of the service", name, k)
				}
			}
			// The service accepts its compose configuration.
			if err := config.Parse(svc.flags, nil, func(k string) (string, bool) { v, ok := cs.Environment[k]; return v, ok }); err != nil {
				t.Errorf("%s: compose environment does not parse: %v", name, err)
			} else if err := svc.validate(); err != nil {
				t.Errorf("%s: compose configuration is invalid: %v", name, err)
			}
			for _, must := range []string{"kafka-brokers", "admin-addr", "otlp-endpoint"} {
				if _, ok := cs.Environment[config.EnvName(must)]; !ok {
					t.Errorf("%s: %s not set", name, config.EnvName(must))
				}
			}
			if got := port(cs.Environment["TRIBUTARY_ADMIN_ADDR"]); got != svc.admin {
				t.Errorf("%s: admin port %s, want %s", name, got, svc.admin)
			}
			want := []string{svc.admin + ":" + svc.admin}
			if svc.grpcFlags {
				if got := port(cs.Environment["TRIBUTARY_GRPC_ADDR"]); got != svc.grpc {
					t.Errorf("%s: gRPC port %s, want %s", name, got, svc.grpc)
				}
				want = append(want, svc.grpc+":"+svc.grpc)
			}
			for _, p := range want {
				if !slices.Contains(cs.Ports, p) {
					t.Errorf("%s: port %s not published (ports %v)", name, p, cs.Ports)
				}
			}
			for k, v := range cs.Environment {
				// Paths into the image must come from the example the Dockerfile copies.
				if rest, ok := strings.CutPrefix(v, "/opt/tributary/"); ok {
					if _, err := os.Stat(filepath.Join(repoRoot, rest)); err != nil {
						t.Errorf("%s: %s=%s: %v", name, k, v, err)
					}
				}
				// A file:// archive lives on a named volume, so that it
				// survives the container (the archive is the only copy of
				// history Kafka has expired).
				if dir, ok := strings.CutPrefix(v, "file://"); ok && !onNamedVolume(c, cs, dir) {
					t.Errorf("%s: %s=%s is not on a named volume of the service (volumes %v)", name, k, v, cs.Volumes)
				}
				// Addresses of other compose services must name services that exist.
				for _, host := range hostsIn(v) {
					if _, ok := c.Services[host]; !ok {
						t.Errorf("%s: %s=%s names host %s, which is not a compose service", name, k, v, host)
					}
				}
			}
		})
	}
	if !bytes.Contains(dockerfile, []byte("COPY examples/fraud /opt/tributary/examples/fraud")) {
		t.Error("deploy/Dockerfile does not copy examples/fraud to /opt/tributary/examples/fraud")
	}
	for name, cs := range c.Services {
		for _, v := range cs.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("%s: mounted %s: %v", name, src, err)
				}
			}
		}
		for _, sec := range cs.Secrets {
			def, ok := c.Secrets[sec]
			if !ok {
				t.Errorf("%s uses secret %s, which is not declared", name, sec)
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, def.File)); err != nil {
				t.Errorf("secret %s: %v", sec, err)
			}
		}
		for dep := range cs.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
	}
}

// onNamedVolume reports whether dir is at or under the mount point of a
// named volume (declared at the top level) of the service.
func onNamedVolume(c composeFile, cs composeService, dir string) bool {
	for _, v := range cs.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		if _, named := c.Volumes[parts[0]]; !named {
			continue
		}
		if target := filepath.Clean(parts[1]); dir == target || strings.HasPrefix(filepath.Clean(dir), target+"/") {
			return true
		}
	}
	return false
}

// hostsIn returns the host names in an address list or URL value.
func hostsIn(v string) []string {
	var hosts []string
	for _, item := range strings.Split(v, ",") {
		host := ""
		if u, err := url.Parse(item); err == nil && u.Scheme != "" && u.Host != "" {
			host = u.Hostname()
		} else if strings.Contains(item, "://") {
			// A URL without a host (file:///path) names none.
		} else if h, _, err := net.SplitHostPort(item); err == nil {
			host = h
		}
		if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			hosts = append(hosts, host)
		}
	}
	return hosts
}

// TestDeployFilesAgree checks the support files compose mounts against each
// other and the example: one OLTP schema, Prometheus scraping every admin
// port, Pinot's table reading the topic the metrics service writes.
func TestDeployFilesAgree(t *testing.T) {
	a, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "postgres", "init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "fraud", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("deploy/postgres/init.sql and examples/fraud/schema.sql differ: the demo and compose must run the same schema")
	}
	prom, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range tributaryServices() {
		if !bytes.Contains(prom, []byte(name+":"+svc.admin)) {
			t.Errorf("prometheus.yml does not scrape %s:%s", name, svc.admin)
		}
	}
	var table struct {
		TableName        string `json:"tableName"`
		TableIndexConfig struct {
			StreamConfigs map[string]string `json:"streamConfigs"`
		} `json:"tableIndexConfig"`
	}
	tb, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "pinot", "model_minute_realtime_table.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(tb, &table); err != nil {
		t.Fatalf("model_minute_realtime_table.json: %v", err)
	}
	if got := table.TableIndexConfig.StreamConfigs["stream.kafka.topic.name"]; got != "metrics.model_minute" {
		t.Errorf("Pinot table reads topic %q, want metrics.model_minute", got)
	}
}
