package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"
)

// TestDependencies checks the operators' resources against what the
// services are configured to expect of them: PostgreSQL's logical WAL and
// the owner ingest connects as, ScyllaDB's datacenter and the keyspace's
// replication, Kafka's replication against its nodes, Grafana's
// datasources, and the archive's reach.
func TestDependencies(t *testing.T) {
	all := renderAll(t)
	for _, dir := range overlays {
		r := all[dir]
		t.Run(dir, func(t *testing.T) {
			env := func(svc, k string) string {
				for _, w := range r.workloads() {
					if w.name == svc {
						for _, e := range w.pod.Spec.Containers[0].Env {
							if e.Name == k {
								return e.Value
							}
						}
					}
				}
				return ""
			}
			// PostgreSQL.
			if len(r.pgClusters) != 1 {
				t.Fatalf("%d CloudNativePG Clusters, want 1", len(r.pgClusters))
			}
			pg := r.pgClusters[0]
			if got := pg.Spec.PostgreSQL.Parameters["wal_level"]; got != "logical" {
				t.Errorf("Cluster %s: wal_level %q, ingest needs logical", pg.Metadata.Name, got)
			}
			dsn, err := pgconn.ParseConfig(env("ingest", "TRIBUTARY_POSTGRES_DSN"))
			if err != nil {
				t.Fatal(err)
			}
			initdb := pg.Spec.Bootstrap.InitDB
			if dsn.Database != initdb.Database || dsn.User != initdb.Owner {
				t.Errorf("ingest connects to %s as %s; the Cluster creates %s owned by %s", dsn.Database, dsn.User, initdb.Database, initdb.Owner)
			}
			grant := "ALTER ROLE " + initdb.Owner + " WITH REPLICATION"
			if !strings.Contains(strings.Join(initdb.PostInitApplicationSQL, "\n"), grant) {
				t.Errorf("Cluster %s: the owner %s is not given REPLICATION (%q), which ingest's slot needs", pg.Metadata.Name, initdb.Owner, grant)
			}

			// Kafka: enough nodes for every topic's replicas and min ISR.
			if len(r.kafkas) != 1 || len(r.nodePools) == 0 {
				t.Fatalf("want one Kafka and its node pools, got %d and %d", len(r.kafkas), len(r.nodePools))
			}
			nodes := 0
			for _, np := range r.nodePools {
				nodes += np.Spec.Replicas
			}
			for _, kt := range r.topics {
				isr, _ := strconv.Atoi(toString(kt.Spec.Config["min.insync.replicas"]))
				if kt.Spec.Replicas > nodes || isr > kt.Spec.Replicas || kt.Spec.Partitions < 1 {
					t.Errorf("KafkaTopic %s: %d partitions, %d replicas, min ISR %d on %d nodes", kt.Spec.TopicName, kt.Spec.Partitions, kt.Spec.Replicas, isr, nodes)
				}
			}
			for _, k := range []string{"default.replication.factor", "offsets.topic.replication.factor", "transaction.state.log.replication.factor"} {
				if n, _ := strconv.Atoi(toString(r.kafkas[0].Spec.Kafka.Config[k])); n < 1 || n > nodes {
					t.Errorf("Kafka %s=%v on %d nodes", k, r.kafkas[0].Spec.Kafka.Config[k], nodes)
				}
			}

			// ScyllaDB: the featureserver's datacenter and replication.
			if env("featureserver", "TRIBUTARY_STORE") == "scylla" {
				if len(r.scyllaClusters) != 1 {
					t.Fatalf("featureserver uses ScyllaDB; %d ScyllaClusters", len(r.scyllaClusters))
				}
				sc := r.scyllaClusters[0]
				members := 0
				for _, rack := range sc.Spec.Datacenter.Racks {
					members += rack.Members
				}
				dc := env("featureserver", "TRIBUTARY_SCYLLA_LOCAL_DC")
				if dc != sc.Spec.Datacenter.Name {
					t.Errorf("featureserver routes to datacenter %q, the ScyllaCluster's is %q", dc, sc.Spec.Datacenter.Name)
				}
				m := regexp.MustCompile(`'` + regexp.QuoteMeta(sc.Spec.Datacenter.Name) + `': (\d+)`).FindStringSubmatch(env("featureserver", "TRIBUTARY_SCYLLA_REPLICATION"))
				if m == nil {
					t.Errorf("TRIBUTARY_SCYLLA_REPLICATION does not replicate to %s", sc.Spec.Datacenter.Name)
				} else if rf, _ := strconv.Atoi(m[1]); rf > members {
					t.Errorf("keyspace replication %d in %s, which has %d members", rf, sc.Spec.Datacenter.Name, members)
				}
			} else if len(r.scyllaClusters) != 0 {
				t.Errorf("a ScyllaCluster, but the featureserver uses its %s store", env("featureserver", "TRIBUTARY_STORE"))
			}

			// The archive in object storage is reachable.
			if strings.HasPrefix(env("offline", "TRIBUTARY_OFFLINE"), "s3://") {
				ns := map[string]string{"kubernetes.io/metadata.name": r.namespace()}
				if !egressToInternet(r.netpols, map[string]string{"app.kubernetes.io/name": "offline", "app.kubernetes.io/part-of": "tributary"}, ns, 443) {
					t.Error("offline archives to S3, but no NetworkPolicy lets it reach HTTPS")
				}
			}

			// Pinot's table reads the brokers the services use.
			for _, j := range r.jobs {
				if j.Name == "pinot-init" {
					for _, e := range j.Spec.Template.Spec.Containers[0].Env {
						if e.Name == "KAFKA_BROKERS" && e.Value != env("featurizer", "TRIBUTARY_KAFKA_BROKERS") {
							t.Errorf("pinot-init points Pinot's table at %s, the services use %s", e.Value, env("featurizer", "TRIBUTARY_KAFKA_BROKERS"))
						}
					}
				}
			}

			// Grafana's datasources name Services that exist.
			if cm := r.configMap0("grafana-datasources"); cm != nil {
				var ds struct {
					Datasources []struct {
						Name     string         `yaml:"name"`
						URL      string         `yaml:"url"`
						JSONData map[string]any `yaml:"jsonData"`
					} `yaml:"datasources"`
				}
				if err := yaml.Unmarshal([]byte(cm.Data["datasources.yaml"]), &ds); err != nil {
					t.Fatal(err)
				}
				for _, d := range ds.Datasources {
					urls := []string{d.URL, toString(d.JSONData["brokerUrl"]), toString(d.JSONData["controllerUrl"])}
					for _, u := range urls {
						addrs, _ := addresses("", u)
						for _, a := range addrs {
							p, _ := strconv.Atoi(a[1])
							if s := r.service(a[0]); s != nil && s.Spec.ExternalName != "" {
								continue
							}
							if _, err := resolveHost(r, a[0], p); err != nil {
								t.Errorf("Grafana datasource %s: %v", d.Name, err)
							}
						}
					}
				}
			}
		})
	}
	// The Pinot chart's release name makes the Services the overlays use.
	b, err := os.ReadFile(filepath.Join(k8sDir, "deps", "pinot", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "helm install pinot ") {
		t.Error("deps/pinot/values.yaml: the documented release is not named pinot (the Services pinot-broker and pinot-controller come from the release name)")
	}
}

func (r *rendered) namespace() string {
	for _, d := range r.deployments {
		return d.Namespace
	}
	return ""
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return ""
	}
}
