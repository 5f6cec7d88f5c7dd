package check

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
)

// exampleFeatures and exampleModels are what the ConfigMaps must carry.
var (
	exampleFeatures = filepath.Join(repoRoot, "examples", "fraud", "features")
	exampleModels   = filepath.Join(repoRoot, "examples", "fraud", "models")
)

// checked is what checking one service's container found.
type checked struct {
	svc    serviceCode
	w      workload
	c      *corev1.Container
	env    map[string]string // plain values as written
	files  *podFiles
	topics []kafka.TopicSpec
	reads  []string // topics consumed, not created
	// paths maps a path flag's variable to the directory it names on this machine.
	paths map[string]string
}

// checkService checks one Tributary service's workload in r against its code.
func checkService(t *testing.T, r *rendered, svc serviceCode, external map[string]externalSecret) *checked {
	var found []workload
	for _, w := range r.workloads() {
		if w.name == svc.name {
			found = append(found, w)
		}
	}
	if len(found) != 1 {
		t.Errorf("%s: %d workloads named %s, want one Deployment or StatefulSet", r.dir, len(found), svc.name)
		return nil
	}
	w := found[0]
	pod := &w.pod.Spec
	if w.pod.Labels["app.kubernetes.io/name"] != svc.name || w.pod.Labels["app.kubernetes.io/part-of"] != "tributary" {
		t.Errorf("%s: pods are not labelled app.kubernetes.io/name=%s, app.kubernetes.io/part-of=tributary (NetworkPolicies and monitors select them so): %v", svc.name, svc.name, w.pod.Labels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", svc.name, len(pod.Containers))
	}
	c := &pod.Containers[0]
	out := &checked{svc: svc, w: w, c: c, env: map[string]string{}, paths: map[string]string{}}

	// The binary: the image's, built by deploy/Dockerfile.
	if !slices.Equal(c.Command, []string{svc.name}) || len(c.Args) != 0 {
		t.Errorf("%s: command %v args %v, want [%s] and configuration through TRIBUTARY_* only", svc.name, c.Command, c.Args, svc.name)
	}
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "-o /out/"+svc.name+" ") {
		t.Errorf("%s: deploy/Dockerfile does not build the %s binary", svc.name, svc.name)
	}

	// Volumes, laid out as the pod sees them.
	var claims []string
	for _, s := range r.statefulSets {
		if s.Name == w.name {
			for _, vct := range s.Spec.VolumeClaimTemplates {
				claims = append(claims, vct.Name)
			}
		}
	}
	files, errs := materialize(r, pod, c, claims, external, t.TempDir())
	for _, err := range errs {
		t.Errorf("%s: %v", svc.name, err)
	}
	out.files = files

	// Environment: every TRIBUTARY_* is a flag of the service; others are
	// named; references resolve.
	bound := svc.bind()
	flagEnv := map[string]string{}
	bound.flags.VisitAll(func(f *flag.Flag) { flagEnv[config.EnvName(f.Name)] = f.Name })
	for _, e := range c.Env {
		if _, isFlag := flagEnv[e.Name]; !isFlag {
			if _, ok := svc.nonFlagEnv[e.Name]; !ok {
				t.Errorf("%s: environment %s matches no flag of the service and is not a variable it reads", svc.name, e.Name)
			}
		}
		if e.ValueFrom != nil {
			checkEnvRef(t, r, svc.name, e, external)
			continue
		}
		out.env[e.Name] = e.Value
	}
	for _, must := range []string{"kafka-brokers", "admin-addr", "otlp-endpoint"} {
		if _, ok := out.env[config.EnvName(must)]; !ok {
			t.Errorf("%s: %s not set", svc.name, config.EnvName(must))
		}
	}
	// Paths are looked up on the pod's volumes and rewritten to this machine.
	lookupEnv := map[string]string{}
	for k, v := range out.env {
		lookupEnv[k] = v
	}
	for flagName, kind := range bound.paths {
		k := config.EnvName(flagName)
		v, ok := out.env[k]
		if !ok || files == nil {
			continue
		}
		p := v
		if kind == archiveURL {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "file" && u.Scheme != "s3") {
				t.Errorf("%s: %s=%s is not a file:// or s3:// URL", svc.name, k, v)
				continue
			}
			if u.Scheme == "s3" {
				continue
			}
			p = u.Path
		}
		local, mi, err := files.resolve(p)
		if err != nil {
			t.Errorf("%s: %s=%s: %v", svc.name, k, v, err)
			continue
		}
		switch kind {
		case featureViews:
			if _, err := featurespec.LoadDir(local); err != nil {
				t.Errorf("%s: %s=%s: the mounted feature views do not load: %v", svc.name, k, v, err)
			} else if err := sameTree(exampleFeatures, local); err != nil {
				t.Errorf("%s: %s=%s (%s) is not examples/fraud/features: %v", svc.name, k, v, mi.source, err)
			}
		case modelRepository:
			if err := sameTree(exampleModels, local); err != nil {
				t.Errorf("%s: %s=%s (%s) is not examples/fraud/models: %v", svc.name, k, v, mi.source, err)
			}
		case secretFile:
			if b, err := os.ReadFile(local); err != nil || len(b) == 0 {
				t.Errorf("%s: %s=%s: no such file on the mounted %s", svc.name, k, v, mi.source)
			} else if !strings.HasPrefix(mi.source, "secret ") {
				t.Errorf("%s: %s=%s is on %s, want a Secret", svc.name, k, v, mi.source)
			}
		case writableDir, archiveURL:
			if !mi.writable {
				t.Errorf("%s: %s=%s is on %s, which is not writable", svc.name, k, v, mi.source)
			}
		}
		lookupEnv[k] = local
		if kind == archiveURL {
			lookupEnv[k] = "file://" + local
		}
		out.paths[k] = local
	}
	// The service accepts its configuration.
	if err := config.Parse(bound.flags, nil, func(k string) (string, bool) { v, ok := lookupEnv[k]; return v, ok }); err != nil {
		t.Errorf("%s: environment does not parse: %v", svc.name, err)
	} else if err := bound.validate(); err != nil {
		t.Errorf("%s: configuration is invalid: %v", svc.name, err)
	} else {
		if bound.topics != nil {
			if out.topics, err = bound.topics(); err != nil {
				t.Errorf("%s: topics: %v", svc.name, err)
			}
		}
		if bound.reads != nil {
			if out.reads, err = bound.reads(); err != nil {
				t.Errorf("%s: topics read: %v", svc.name, err)
			}
		}
	}

	// Ports: the admin and gRPC addresses listen on the container's named
	// ports, which are DESIGN.md §4's; probes use the admin port.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	checkPort := func(name, env, want string) {
		got := port(out.env[env])
		if got != want {
			t.Errorf("%s: %s=%s, want port %s (DESIGN.md §4)", svc.name, env, out.env[env], want)
		}
		if strconv.Itoa(int(ports[name])) != want {
			t.Errorf("%s: container port %q is %d, want %s", svc.name, name, ports[name], want)
		}
	}
	checkPort("admin", "TRIBUTARY_ADMIN_ADDR", svc.admin)
	wantPorts := 1
	if svc.grpc != "" {
		checkPort("grpc", "TRIBUTARY_GRPC_ADDR", svc.grpc)
		wantPorts = 2
	}
	if len(c.Ports) != wantPorts {
		t.Errorf("%s: container ports %v, want admin%s", svc.name, c.Ports, map[bool]string{true: " and grpc"}[svc.grpc != ""])
	}
	probe := func(what string, p *corev1.Probe, path string, required bool) {
		if p == nil {
			if required {
				t.Errorf("%s: no %s probe", svc.name, what)
			}
			return
		}
		if p.HTTPGet == nil || p.HTTPGet.Path != path || !(p.HTTPGet.Port == intstr.FromString("admin") || p.HTTPGet.Port.String() == svc.admin) {
			t.Errorf("%s: %s probe %+v, want GET %s on the admin port", svc.name, what, p.ProbeHandler, path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz", true)
	probe("readiness", c.ReadinessProbe, "/readyz", true)
	probe("startup", c.StartupProbe, "/healthz", false)

	// The Service of the same name exposes the same ports.
	if s := r.service(svc.name); s == nil {
		t.Errorf("%s: no Service named %s", svc.name, svc.name)
	} else {
		if !selects(s.Spec.Selector, w.pod.Labels) {
			t.Errorf("%s: Service selector %v does not select the pods", svc.name, s.Spec.Selector)
		}
		got := map[string]string{}
		for _, sp := range s.Spec.Ports {
			got[sp.Name] = fmt.Sprintf("%d->%s", sp.Port, sp.TargetPort.String())
		}
		want := map[string]string{"admin": svc.admin + "->admin"}
		if svc.grpc != "" {
			want["grpc"] = svc.grpc + "->grpc"
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: Service ports %v, want %v", svc.name, got, want)
		}
	}

	// Resources and hardening.
	req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory()
	if req.IsZero() || lim.IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s: want cpu and memory requests and a memory limit, got %v", svc.name, c.Resources)
	} else if lim.Cmp(*req) < 0 {
		t.Errorf("%s: memory limit %s under the request %s", svc.name, lim, req)
	}
	if mb, ok := out.env["TRIBUTARY_MEMORY_LIMIT_MB"]; ok {
		n, _ := strconv.ParseInt(mb, 10, 64)
		if n<<20 >= lim.Value() {
			t.Errorf("%s: TRIBUTARY_MEMORY_LIMIT_MB=%s is not under the container's memory limit %s", svc.name, mb, lim)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want a read-only root file system and no privilege escalation", svc.name)
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pods must run as non-root", svc.name)
	}
	return out
}

func checkEnvRef(t *testing.T, r *rendered, svc string, e corev1.EnvVar, external map[string]externalSecret) {
	switch {
	case e.ValueFrom.SecretKeyRef != nil:
		ref := e.ValueFrom.SecretKeyRef
		keys, ok := r.secretKeys(ref.Name, external)
		if !ok {
			t.Errorf("%s: %s reads Secret %s, which is neither rendered, nor made by an operator in the render, nor listed in README.md's Secrets", svc, e.Name, ref.Name)
		} else if !slices.Contains(keys, ref.Key) {
			t.Errorf("%s: %s reads key %s of Secret %s, which has %v", svc, e.Name, ref.Key, ref.Name, keys)
		}
	case e.ValueFrom.ConfigMapKeyRef != nil:
		ref := e.ValueFrom.ConfigMapKeyRef
		if cm := r.configMap(ref.Name); cm == nil {
			t.Errorf("%s: %s reads ConfigMap %s, which is not in the render", svc, e.Name, ref.Name)
		} else if _, ok := cm.Data[ref.Key]; !ok {
			t.Errorf("%s: %s reads key %s of ConfigMap %s, which has none", svc, e.Name, ref.Key, ref.Name)
		}
	}
}

func selects(selector, podLabels map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(podLabels))
}

func selectorMatches(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}

// TestManifestsMatchCode renders every overlay and checks each Tributary
// service's workload against the service's code: flags and environment,
// ports, probes, mounted files, secrets, the topics the code creates
// against the KafkaTopics, every connection against the NetworkPolicies,
// and the autoscalers, disruption budgets and monitors against the
// workloads they name.
func TestManifestsMatchCode(t *testing.T) {
	all := renderAll(t)
	external, err := secretsFromREADME()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range overlays {
		r := all[dir]
		t.Run(dir, func(t *testing.T) {
			var svcs []*checked
			for _, svc := range codeServices() {
				t.Run(svc.name, func(t *testing.T) {
					if c := checkService(t, r, svc, external); c != nil {
						svcs = append(svcs, c)
					}
				})
			}
			t.Run("topics", func(t *testing.T) { checkTopics(t, r, svcs) })
			t.Run("connections", func(t *testing.T) { checkConnections(t, r, svcs) })
			t.Run("scaling", func(t *testing.T) { checkScaling(t, r) })
		})
	}
}

// checkTopics: every topic a service creates has a KafkaTopic with the
// code's partitions (where the code sets them) and cleanup policy, the
// services agree with each other, and every KafkaTopic is used.
func checkTopics(t *testing.T, r *rendered, svcs []*checked) {
	if len(r.topics) == 0 {
		t.Fatalf("%s: no KafkaTopics", r.dir)
	}
	want := map[string]kafka.TopicSpec{}
	by := map[string]string{}
	for _, c := range svcs {
		for _, ts := range c.topics {
			if prev, ok := want[ts.Name]; ok {
				if (prev.Partitions != 0 && ts.Partitions != 0 && prev.Partitions != ts.Partitions) || prev.Compacted != ts.Compacted {
					t.Errorf("topic %s: %s creates it as %+v, %s as %+v", ts.Name, by[ts.Name], prev, c.svc.name, ts)
				}
				if prev.Partitions != 0 {
					ts.Partitions = prev.Partitions
				}
			}
			want[ts.Name] = ts
			by[ts.Name] += c.svc.name + " "
		}
	}
	if len(want) == 0 {
		t.Fatal("the services create no topics: the code's Topics were not read")
	}
	have := map[string]*kafkaTopic{}
	for _, kt := range r.topics {
		have[kt.Spec.TopicName] = kt
		if kt.Metadata.Labels["strimzi.io/cluster"] != kafkaClusterName(r) {
			t.Errorf("KafkaTopic %s: label strimzi.io/cluster=%q, want the Kafka cluster %q", kt.Metadata.Name, kt.Metadata.Labels["strimzi.io/cluster"], kafkaClusterName(r))
		}
	}
	for _, name := range sortedKeys(want) {
		ts := want[name]
		kt, ok := have[name]
		if !ok {
			t.Errorf("topic %s (created by %s) has no KafkaTopic: the service would create it with one replica", name, strings.TrimSpace(by[name]))
			continue
		}
		if ts.Partitions != 0 && kt.Spec.Partitions != ts.Partitions {
			t.Errorf("KafkaTopic %s: %d partitions, the code (%s) creates %d", name, kt.Spec.Partitions, strings.TrimSpace(by[name]), ts.Partitions)
		}
		policy, _ := kt.Spec.Config["cleanup.policy"].(string)
		if ts.Compacted != (policy == "compact") {
			t.Errorf("KafkaTopic %s: cleanup.policy %q, the code (%s) wants compacted=%v", name, policy, strings.TrimSpace(by[name]), ts.Compacted)
		}
	}
	// Topics a service only reads (the offline archiver) must exist: it
	// does not create them, and with auto.create.topics.enable=false its
	// consumer would wait for them forever.
	read := map[string]string{}
	for _, c := range svcs {
		for _, name := range c.reads {
			read[name] += c.svc.name + " "
			if _, ok := have[name]; !ok {
				t.Errorf("topic %s (read by %s) has no KafkaTopic", name, c.svc.name)
			}
		}
	}
	// Topics no service creates: written by applications or by no code yet.
	others := map[string]string{
		"audit":  "authorization decisions (DESIGN.md §4); no service writes it yet",
		"labels": "label producers",
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			if _, ok := others[name]; !ok && read[name] == "" && !strings.HasPrefix(name, "events.") {
				t.Errorf("KafkaTopic %s: no service creates or reads it, and it is not a known application topic", name)
			}
		}
	}
	// Pinot's REALTIME table reads a topic that exists.
	if r.configMap0("pinot-init") != nil {
		if _, ok := have["metrics.model_minute"]; !ok {
			t.Error("Pinot's table reads metrics.model_minute, which has no KafkaTopic")
		}
	}
}

func (r *rendered) configMap0(base string) *corev1.ConfigMap {
	for _, c := range r.configMaps {
		if trimHash(c.Name) == base {
			return c
		}
	}
	return nil
}

func kafkaClusterName(r *rendered) string {
	if len(r.kafkas) != 1 {
		return ""
	}
	return r.kafkas[0].Metadata.Name
}

// endpoint is where a host:port in a service's configuration leads.
type endpoint struct {
	pods      map[string]string // labels of the pods behind it
	port      int               // the pods' port
	tributary bool              // a Tributary pod (its own NetworkPolicies apply)
	listener  *kafkaListener
}

// resolveHost finds host:port among the render's Services and the
// dependencies' Services (named by their operators or charts).
func resolveHost(r *rendered, host string, p int) (*endpoint, error) {
	if s := r.service(host); s != nil {
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			return nil, fmt.Errorf("Service %s is an ExternalName", host)
		}
		for _, sp := range s.Spec.Ports {
			if int(sp.Port) != p {
				continue
			}
			for _, w := range r.workloads() {
				if selects(s.Spec.Selector, w.pod.Labels) {
					for _, c := range w.pod.Spec.Containers {
						for _, cp := range c.Ports {
							if cp.Name == sp.TargetPort.String() || strconv.Itoa(int(cp.ContainerPort)) == sp.TargetPort.String() {
								return &endpoint{pods: w.pod.Labels, port: int(cp.ContainerPort), tributary: w.pod.Labels["app.kubernetes.io/part-of"] == "tributary"}, nil
							}
						}
					}
				}
			}
			return nil, fmt.Errorf("Service %s port %d reaches no container port", host, p)
		}
		return nil, fmt.Errorf("Service %s has no port %d", host, p)
	}
	for _, k := range r.kafkas {
		if host == k.Metadata.Name+"-kafka-bootstrap" {
			for i, l := range k.Spec.Kafka.Listeners {
				if l.Port == p {
					return &endpoint{pods: map[string]string{"strimzi.io/cluster": k.Metadata.Name, "strimzi.io/kind": "Kafka"}, port: p, listener: &k.Spec.Kafka.Listeners[i]}, nil
				}
			}
			return nil, fmt.Errorf("Kafka %s has no listener on port %d", k.Metadata.Name, p)
		}
	}
	for _, c := range r.pgClusters {
		if host == c.Metadata.Name+"-rw" && p == 5432 {
			return &endpoint{pods: map[string]string{"cnpg.io/cluster": c.Metadata.Name}, port: p}, nil
		}
	}
	for _, c := range r.scyllaClusters {
		if host == c.Metadata.Name+"-client" && (p == 9042 || p == 19042) {
			return &endpoint{pods: map[string]string{"scylla/cluster": c.Metadata.Name}, port: p}, nil
		}
	}
	// Pinot is installed by its Helm chart (release "pinot",
	// deps/pinot/values.yaml) next to the overlays that include deps/pinot.
	if r.configMap0("pinot-init") != nil {
		switch {
		case host == "pinot-broker" && p == 8099:
			return &endpoint{pods: map[string]string{"app": "pinot", "component": "broker"}, port: p}, nil
		case host == "pinot-controller" && p == 9000:
			return &endpoint{pods: map[string]string{"app": "pinot", "component": "controller"}, port: p}, nil
		}
	}
	return nil, fmt.Errorf("%s:%d is neither a Service of the render nor a dependency of this overlay", host, p)
}

// addresses returns the host:port pairs in a configuration value: a
// host:port list, URLs, or a libpq keyword DSN.
func addresses(env, v string) ([][2]string, error) {
	if env == "TRIBUTARY_POSTGRES_DSN" {
		cfg, err := pgconn.ParseConfig(v)
		if err != nil {
			return nil, err
		}
		return [][2]string{{cfg.Host, strconv.Itoa(int(cfg.Port))}}, nil
	}
	var out [][2]string
	for _, item := range strings.Split(v, ",") {
		if u, err := url.Parse(item); err == nil && u.Scheme != "" && u.Host != "" {
			if u.Scheme == "s3" {
				continue // object storage, outside the cluster
			}
			p := u.Port()
			if p == "" {
				p = map[string]string{"http": "80", "https": "443"}[u.Scheme]
			}
			out = append(out, [2]string{u.Hostname(), p})
		} else if h, p, err := net.SplitHostPort(item); err == nil && len(validation.IsDNS1123Subdomain(h)) == 0 {
			if _, err := strconv.ParseUint(p, 10, 16); err == nil {
				out = append(out, [2]string{h, p})
			}
		}
	}
	return out, nil
}

// checkConnections follows every address in every service's configuration
// to a Service or dependency, and checks that the NetworkPolicies allow it:
// the source's egress, the destination's ingress (Tributary pods), and for
// Kafka the listener's peers (Strimzi turns them into a NetworkPolicy).
func checkConnections(t *testing.T, r *rendered, svcs []*checked) {
	ns := map[string]string{}
	for _, o := range r.other {
		if n, ok := o.(*corev1.Namespace); ok {
			ns = map[string]string{"kubernetes.io/metadata.name": n.Name}
		}
	}
	if len(ns) == 0 {
		t.Fatalf("%s: no Namespace in the render", r.dir)
	}
	if !slices.ContainsFunc(r.netpols, func(p *networkingv1.NetworkPolicy) bool {
		return len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 && len(p.Spec.PolicyTypes) == 2
	}) {
		t.Errorf("%s: no default-deny NetworkPolicy (both directions)", r.dir)
	}
	conns := 0
	for _, c := range svcs {
		for _, k := range sortedKeys(c.env) {
			if strings.HasSuffix(k, "_ADDR") && strings.HasPrefix(c.env[k], ":") {
				continue // a listen address
			}
			addrs, err := addresses(k, c.env[k])
			if err != nil {
				t.Errorf("%s: %s: %v", c.svc.name, k, err)
			}
			for _, a := range addrs {
				p, _ := strconv.Atoi(a[1])
				ep, err := resolveHost(r, a[0], p)
				if err != nil {
					t.Errorf("%s: %s=%s: %v", c.svc.name, k, c.env[k], err)
					continue
				}
				conns++
				src := c.w.pod.Labels
				if !allowed(r.netpols, networkingv1.PolicyTypeEgress, src, ep.pods, ns, ep.port) {
					t.Errorf("%s: %s=%s: no NetworkPolicy lets %s reach %v port %d", c.svc.name, k, c.env[k], c.svc.name, ep.pods, ep.port)
				}
				if ep.tributary && !allowed(r.netpols, networkingv1.PolicyTypeIngress, ep.pods, src, ns, ep.port) {
					t.Errorf("%s: %s=%s: no NetworkPolicy lets %v accept %s on port %d", c.svc.name, k, c.env[k], ep.pods, c.svc.name, ep.port)
				}
				if l := ep.listener; l != nil {
					if l.TLS || l.Authentication != nil {
						t.Errorf("%s: %s=%s: Kafka listener %s needs TLS or authentication, which the services do not speak", c.svc.name, k, c.env[k], l.Name)
					}
					if !slices.ContainsFunc(l.NetworkPolicyPeers, func(peer networkingv1.NetworkPolicyPeer) bool { return peerMatches(peer, src, ns) }) {
						t.Errorf("%s: Kafka listener %s's networkPolicyPeers do not admit its pods", c.svc.name, l.Name)
					}
				}
			}
		}
	}
	if conns < len(svcs)*2 {
		t.Errorf("only %d connections found: the addresses were not read", conns)
	}
	// Pinot's servers consume metrics.model_minute from the plain listener.
	if r.configMap0("pinot-init") != nil {
		for _, component := range []string{"controller", "server"} {
			pinot := map[string]string{"app": "pinot", "component": component}
			for _, k := range r.kafkas {
				if !slices.ContainsFunc(k.Spec.Kafka.Listeners[0].NetworkPolicyPeers, func(p networkingv1.NetworkPolicyPeer) bool { return peerMatches(p, pinot, ns) }) {
					t.Errorf("Kafka listener %s does not admit Pinot's %s", k.Spec.Kafka.Listeners[0].Name, component)
				}
			}
		}
	}
}

// allowed evaluates NetworkPolicies for traffic from (egress) or to
// (ingress) the pod with labels self, to or from the pod with labels peer,
// on port, with both pods in the namespace with labels ns.
func allowed(pols []*networkingv1.NetworkPolicy, dir networkingv1.PolicyType, self, peer, ns map[string]string, port int) bool {
	isolated := false
	for _, p := range pols {
		if !selectorMatches(&p.Spec.PodSelector, self) || !slices.Contains(p.Spec.PolicyTypes, dir) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeEgress {
			for _, rule := range p.Spec.Egress {
				if portMatches(rule.Ports, port) && peersMatch(rule.To, peer, ns) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Ingress {
				if portMatches(rule.Ports, port) && peersMatch(rule.From, peer, ns) {
					return true
				}
			}
		}
	}
	return !isolated
}

func portMatches(ports []networkingv1.NetworkPolicyPort, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port == nil || (p.Port.Type == intstr.Int && int(p.Port.IntVal) == port) {
			return true
		}
	}
	return false
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, pod, ns map[string]string) bool {
	if len(peers) == 0 {
		return true
	}
	return slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool { return peerMatches(p, pod, ns) })
}

// peerMatches: a pod in the policy's own namespace. An ipBlock never
// matches a pod (pod IPs are not meant to be listed).
func peerMatches(p networkingv1.NetworkPolicyPeer, pod, ns map[string]string) bool {
	if p.IPBlock != nil {
		return false
	}
	if p.NamespaceSelector != nil && !selectorMatches(p.NamespaceSelector, ns) {
		return false
	}
	if p.PodSelector == nil {
		return true
	}
	return selectorMatches(p.PodSelector, pod)
}

// checkScaling: autoscalers target workloads of the render, disruption
// budgets and monitors select pods that exist.
func checkScaling(t *testing.T, r *rendered) {
	ws := r.workloads()
	find := func(kind, name string) *workload {
		for i := range ws {
			if ws[i].kind == kind && ws[i].name == name {
				return &ws[i]
			}
		}
		return nil
	}
	scaled := map[string]bool{}
	for _, h := range r.hpas {
		ref := h.Spec.ScaleTargetRef
		if find(ref.Kind, ref.Name) == nil || ref.APIVersion != "apps/v1" {
			t.Errorf("HorizontalPodAutoscaler %s targets %s %s/%s, which is not in the render", h.Name, ref.APIVersion, ref.Kind, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: replicas %v..%d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		scaled[ref.Name] = true
		if w := find(ref.Kind, ref.Name); w != nil && w.replicas != nil {
			t.Errorf("%s %s sets replicas, which its HorizontalPodAutoscaler %s owns (an apply would reset them)", ref.Kind, ref.Name, h.Name)
		}
	}
	if !scaled["modelserver"] {
		t.Error("no HorizontalPodAutoscaler for the modelserver")
	}
	if r.dir == "overlays/prod" && !scaled["featureserver"] {
		t.Error("no HorizontalPodAutoscaler for the featureserver")
	}
	budgets := map[string]bool{}
	for _, p := range r.pdbs {
		n := 0
		for _, w := range ws {
			if selectorMatches(p.Spec.Selector, w.pod.Labels) {
				n++
				budgets[w.name] = true
			}
		}
		if n == 0 {
			t.Errorf("PodDisruptionBudget %s selects no pods", p.Name)
		}
	}
	for _, svc := range codeServices() {
		if !budgets[svc.name] {
			t.Errorf("%s has no PodDisruptionBudget", svc.name)
		}
	}
	for _, pm := range r.podMonitors {
		for _, svc := range codeServices() {
			w := find("Deployment", svc.name)
			if w == nil {
				w = find("StatefulSet", svc.name)
			}
			if w == nil || !selectorMatches(&pm.Spec.Selector, w.pod.Labels) {
				t.Errorf("PodMonitor %s does not scrape %s", pm.Metadata.Name, svc.name)
				continue
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if !slices.ContainsFunc(w.pod.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == ep.Port }) || ep.Path != "/metrics" {
					t.Errorf("PodMonitor %s: endpoint %s%s is not %s's metrics", pm.Metadata.Name, ep.Port, ep.Path, svc.name)
				}
			}
		}
	}
	for _, sm := range r.svcMonitors {
		ok := false
		for _, s := range r.services {
			if selectorMatches(&sm.Spec.Selector, s.Labels) {
				for _, ep := range sm.Spec.Endpoints {
					ok = ok || slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port })
				}
			}
		}
		if !ok {
			t.Errorf("ServiceMonitor %s selects no Service port", sm.Metadata.Name)
		}
	}
	if r.dir == "overlays/prod" && len(r.podMonitors) == 0 {
		t.Error("prod has no PodMonitor")
	}
}
