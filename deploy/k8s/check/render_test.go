package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// repoRoot is the repository root, from deploy/k8s/check.
const repoRoot = "../../.."

// k8sDir is deploy/k8s.
var k8sDir = filepath.Join(repoRoot, "deploy", "k8s")

// rendered is one kustomization's output, decoded.
type rendered struct {
	dir string // relative to deploy/k8s
	// Objects of the built-in kinds, decoded strictly into k8s.io/api types.
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
	jobs         []*batchv1.Job
	cronJobs     []*batchv1.CronJob
	pvcs         []*corev1.PersistentVolumeClaim
	other        []runtime.Object // namespaces, service accounts
	// Custom resources, decoded strictly into the fields we expect.
	kafkas         []*kafkaCluster
	nodePools      []*kafkaNodePool
	topics         []*kafkaTopic
	users          []*kafkaUser
	pgClusters     []*pgCluster
	scyllaClusters []*scyllaCluster
	podMonitors    []*podMonitor
	svcMonitors    []*serviceMonitor
}

// workload is a Deployment or StatefulSet seen through what both have.
type workload struct {
	kind, name string
	labels     map[string]string
	pod        *corev1.PodTemplateSpec
	replicas   *int32
}

func (r *rendered) workloads() []workload {
	var out []workload
	for _, d := range r.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Labels, &d.Spec.Template, d.Spec.Replicas})
	}
	for _, s := range r.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Labels, &s.Spec.Template, s.Spec.Replicas})
	}
	return out
}

func (r *rendered) configMap(name string) *corev1.ConfigMap {
	for _, c := range r.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (r *rendered) service(name string) *corev1.Service {
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictSerializer fails on unknown and duplicate fields.
var strictSerializer = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Strict: true})

// render builds the kustomization in deploy/k8s/<dir> as
// `kustomize build --load-restrictor LoadRestrictionsNone` does.
func render(dir string) (*rendered, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsNone
	m, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), filepath.Join(k8sDir, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out := &rendered{dir: dir}
	for _, res := range m.Resources() {
		b, err := res.MarshalJSON()
		if err != nil {
			return nil, err
		}
		id := fmt.Sprintf("%s: %s %s/%s", dir, res.GetKind(), res.GetNamespace(), res.GetName())
		if err := out.decode(res.GetApiVersion(), res.GetKind(), b); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		for _, msg := range validation.IsDNS1123Subdomain(res.GetName()) {
			return nil, fmt.Errorf("%s: metadata.name: %s", id, msg)
		}
		for k, v := range res.GetLabels() {
			for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
				return nil, fmt.Errorf("%s: label %s=%s: %s", id, k, v, msg)
			}
		}
	}
	return out, nil
}

func (r *rendered) decode(apiVersion, kind string, b []byte) error {
	switch apiVersion {
	case "kafka.strimzi.io/v1beta2":
		switch kind {
		case "Kafka":
			return decodeCR(b, &r.kafkas)
		case "KafkaNodePool":
			return decodeCR(b, &r.nodePools)
		case "KafkaTopic":
			return decodeCR(b, &r.topics)
		case "KafkaUser":
			return decodeCR(b, &r.users)
		}
	case "postgresql.cnpg.io/v1":
		if kind == "Cluster" {
			return decodeCR(b, &r.pgClusters)
		}
	case "scylla.scylladb.com/v1":
		if kind == "ScyllaCluster" {
			return decodeCR(b, &r.scyllaClusters)
		}
	case "monitoring.coreos.com/v1":
		switch kind {
		case "PodMonitor":
			return decodeCR(b, &r.podMonitors)
		case "ServiceMonitor":
			return decodeCR(b, &r.svcMonitors)
		}
	}
	obj, _, err := strictSerializer.Decode(b, nil, nil)
	if err != nil {
		return err
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r.deployments = append(r.deployments, o)
	case *appsv1.StatefulSet:
		r.statefulSets = append(r.statefulSets, o)
	case *corev1.Service:
		r.services = append(r.services, o)
	case *corev1.ConfigMap:
		r.configMaps = append(r.configMaps, o)
	case *corev1.Secret:
		r.secrets = append(r.secrets, o)
	case *autoscalingv2.HorizontalPodAutoscaler:
		r.hpas = append(r.hpas, o)
	case *policyv1.PodDisruptionBudget:
		r.pdbs = append(r.pdbs, o)
	case *networkingv1.NetworkPolicy:
		r.netpols = append(r.netpols, o)
	case *batchv1.Job:
		r.jobs = append(r.jobs, o)
	case *batchv1.CronJob:
		r.cronJobs = append(r.cronJobs, o)
	case *corev1.PersistentVolumeClaim:
		r.pvcs = append(r.pvcs, o)
	case *corev1.Namespace, *corev1.ServiceAccount:
		r.other = append(r.other, o)
	default:
		return fmt.Errorf("kind %T is not expected in deploy/k8s", obj)
	}
	return nil
}

// decodeCR decodes a custom resource into T, failing on any field T does
// not declare (the CRDs are not compiled in; these are the fields we use).
func decodeCR[T any](b []byte, into *[]*T) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	v := new(T)
	if err := d.Decode(v); err != nil {
		return err
	}
	*into = append(*into, v)
	return nil
}

// overlays are the kustomizations that deploy the platform.
var overlays = []string{"overlays/dev", "overlays/prod"}

// renderAll renders every kustomization users apply.
func renderAll(t *testing.T) map[string]*rendered {
	t.Helper()
	out := map[string]*rendered{}
	for _, dir := range append(slicesClone(overlays), "jobs") {
		r, err := render(dir)
		if err != nil {
			t.Fatal(err)
		}
		out[dir] = r
	}
	return out
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func trimHash(name string) string {
	// Generated ConfigMaps and Secrets get a content hash suffix.
	if i := strings.LastIndexByte(name, '-'); i > 0 && len(name)-i-1 == 10 {
		return name[:i]
	}
	return name
}
