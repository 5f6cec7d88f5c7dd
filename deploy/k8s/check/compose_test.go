package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
	} `yaml:"services"`
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

// composeHosts maps compose service names to the Services that stand in for
// them on Kubernetes (made by the operators); other names are the same.
var composeHosts = map[string]string{
	"kafka":    "tributary-kafka-bootstrap",
	"postgres": "tributary-pg-rw",
	"scylla":   "tributary-scylla-client",
}

var composeHostRE = regexp.MustCompile(`(^|[/@,])(kafka|postgres|scylla):(\d+)`)

func translateCompose(v string) string {
	return composeHostRE.ReplaceAllStringFunc(v, func(m string) string {
		s := composeHostRE.FindStringSubmatch(m)
		return s[1] + composeHosts[s[2]] + ":" + s[3]
	})
}

// composeDifferences are the only settings in which the prod overlay and
// docker-compose.yml may differ, and why. (Paths are compared by what they
// hold, not by name.)
var composeDifferences = map[string]map[string]string{
	"ingest": {
		"TRIBUTARY_POSTGRES_DSN": "compose writes the password into the URL; Kubernetes names no password and passes it as PGPASSWORD from CloudNativePG's Secret",
		"PGPASSWORD":             "see TRIBUTARY_POSTGRES_DSN",
	},
	"offline": {
		"TRIBUTARY_OFFLINE":     "compose archives to a file:// volume, Kubernetes to an S3 bucket",
		"AWS_ACCESS_KEY_ID":     "the S3 archive's credentials, from the tributary-offline-s3 Secret",
		"AWS_SECRET_ACCESS_KEY": "the S3 archive's credentials, from the tributary-offline-s3 Secret",
	},
	"featureserver": {
		"TRIBUTARY_SCYLLA_REPLICATION": "three ScyllaDB nodes in datacenter dc1 (compose runs one node)",
		"TRIBUTARY_SCYLLA_LOCAL_DC":    "three ScyllaDB nodes in datacenter dc1 (compose runs one node)",
		"TRIBUTARY_MEMORY_LIMIT_MB":    "the GC's soft limit under the container's memory limit (compose sets no limit)",
	},
}

// pathVars hold files: compared by content (compose reads the image's copy
// under /opt/tributary, Kubernetes a mounted ConfigMap).
var pathVars = []string{"TRIBUTARY_FEATURES", "TRIBUTARY_MODELS"}

// TestComposeAndKubernetesAgree: docker-compose.yml and the prod overlay
// run the same services with the same configuration (environment, after
// mapping compose host names to the operators' Services), the same files,
// the same ports and the same versions of the dependencies.
func TestComposeAndKubernetesAgree(t *testing.T) {
	prod, err := render("overlays/prod")
	if err != nil {
		t.Fatal(err)
	}
	external, err := secretsFromREADME()
	if err != nil {
		t.Fatal(err)
	}
	compose := loadCompose(t)
	compared := 0
	for _, svc := range codeServices() {
		cs, ok := compose.Services[svc.name]
		if !ok {
			t.Errorf("%s: in the prod overlay, not in docker-compose.yml", svc.name)
			continue
		}
		var w *workload
		for _, x := range prod.workloads() {
			if x.name == svc.name {
				w = &x
			}
		}
		if w == nil {
			t.Errorf("%s: in docker-compose.yml, not in the prod overlay", svc.name)
			continue
		}
		compared++
		c := &w.pod.Spec.Containers[0]
		k8s := map[string]string{}
		for _, e := range c.Env {
			k8s[e.Name] = e.Value
			if e.ValueFrom != nil {
				k8s[e.Name] = "(from a reference)"
			}
		}
		diffs := composeDifferences[svc.name]
		files, errs := materialize(prod, &w.pod.Spec, c, nil, external, t.TempDir())
		for _, err := range errs {
			t.Errorf("%s: %v", svc.name, err)
		}
		names := sortedKeys(k8s)
		for k := range cs.Environment {
			if _, ok := k8s[k]; !ok {
				names = append(names, k)
			}
		}
		for _, k := range names {
			cv, inCompose := cs.Environment[k]
			kv, inK8s := k8s[k]
			if reason, ok := diffs[k]; ok {
				if inCompose && inK8s && translateCompose(cv) == kv {
					t.Errorf("%s: %s is listed as a difference (%s) but both say %q: drop it from the list", svc.name, k, reason, kv)
				}
				continue
			}
			switch {
			case !inCompose:
				t.Errorf("%s: %s=%s is set on Kubernetes, not in docker-compose.yml (set it in both, or list the difference with its reason)", svc.name, k, kv)
			case !inK8s:
				t.Errorf("%s: %s=%s is set in docker-compose.yml, not on Kubernetes", svc.name, k, cv)
			case slices.Contains(pathVars, k):
				rest, ok := strings.CutPrefix(cv, "/opt/tributary/")
				local, _, err := files.resolve(kv)
				if !ok || err != nil {
					t.Errorf("%s: %s: compose %s, Kubernetes %s: %v", svc.name, k, cv, kv, err)
				} else if err := sameTree(filepath.Join(repoRoot, rest), local); err != nil {
					t.Errorf("%s: %s: compose's %s and Kubernetes' %s hold different files: %v", svc.name, k, cv, kv, err)
				}
			case translateCompose(cv) != kv:
				t.Errorf("%s: %s is %q in docker-compose.yml (%q on Kubernetes's names), %q on Kubernetes", svc.name, k, cv, translateCompose(cv), kv)
			}
		}
		for k := range diffs {
			if _, ok := k8s[k]; !ok {
				if _, ok := cs.Environment[k]; !ok {
					t.Errorf("%s: %s is listed as a difference but set nowhere: drop it from the list", svc.name, k)
				}
			}
		}
		// The ports compose publishes are the container's.
		var cports, kports []string
		for _, p := range cs.Ports {
			cports = append(cports, strings.SplitN(p, ":", 2)[0])
		}
		for _, p := range c.Ports {
			kports = append(kports, strconv.Itoa(int(p.ContainerPort)))
		}
		slices.Sort(cports)
		slices.Sort(kports)
		if !slices.Equal(cports, kports) {
			t.Errorf("%s: compose publishes %v, the container listens on %v", svc.name, cports, kports)
		}
	}
	if compared < len(codeServices()) {
		t.Errorf("compared %d services, want the %d of docker-compose.yml", compared, len(codeServices()))
	}

	// The dependencies run the same versions.
	image := func(name string) string { return compose.Services[name].Image }
	tag := func(ref string) string { return ref[strings.LastIndexByte(ref, ':')+1:] }
	containerImage := func(deployment string) string {
		for _, d := range prod.deployments {
			if d.Name == deployment {
				return d.Spec.Template.Spec.Containers[0].Image
			}
		}
		return ""
	}
	for _, name := range []string{"otel-collector", "grafana"} {
		if got := containerImage(name); got != image(name) {
			t.Errorf("%s: image %q on Kubernetes, %q in docker-compose.yml", name, got, image(name))
		}
	}
	if len(prod.kafkas) != 1 || prod.kafkas[0].Spec.Kafka.Version != tag(image("kafka")) {
		t.Errorf("Kafka: Strimzi runs %v, compose %s", prod.kafkas, image("kafka"))
	}
	if len(prod.scyllaClusters) != 1 || !strings.HasPrefix(prod.scyllaClusters[0].Spec.Version, tag(image("scylla"))+".") {
		t.Errorf("ScyllaDB: the operator runs another version than compose's %s", image("scylla"))
	}
	if len(prod.pgClusters) != 1 || !strings.HasPrefix(tag(prod.pgClusters[0].Spec.ImageName), tag(image("postgres"))+".") {
		t.Errorf("PostgreSQL: CloudNativePG runs another major version than compose's %s", image("postgres"))
	}
	var values struct {
		Image struct {
			Repository string `yaml:"repository"`
			Tag        string `yaml:"tag"`
		} `yaml:"image"`
	}
	b, err := os.ReadFile(filepath.Join(k8sDir, "deps", "pinot", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatalf("deps/pinot/values.yaml: %v", err)
	}
	if got := values.Image.Repository + ":" + values.Image.Tag; got != image("pinot-controller") {
		t.Errorf("Pinot: the chart runs %s, compose %s", got, image("pinot-controller"))
	}
}
