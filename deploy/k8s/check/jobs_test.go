package check

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestJobs checks the batch work in deploy/k8s/jobs: Indexed Jobs whose
// pods each take shard $(JOB_COMPLETION_INDEX) of as many shards as the Job
// has completions, reading the feature views of the example and the same
// archive, Kafka and Secrets as the prod overlay, allowed by the
// NetworkPolicies of the namespace they run in.
//
// The commands (`tributary training-set`, `tributary backfill`) are being
// written (issue 11): their flags are checked against that issue's
// specification here, not against code.
func TestJobs(t *testing.T) {
	jobs, err := render("jobs")
	if err != nil {
		t.Fatal(err)
	}
	prod, err := render("overlays/prod")
	if err != nil {
		t.Fatal(err)
	}
	external, err := secretsFromREADME()
	if err != nil {
		t.Fatal(err)
	}
	prodEnv := func(svc, k string) string {
		for _, w := range prod.workloads() {
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
	specs := map[string]*batchv1.JobSpec{}
	for _, j := range jobs.jobs {
		specs["Job "+j.Name] = &j.Spec
	}
	for _, cj := range jobs.cronJobs {
		specs["CronJob "+cj.Name] = &cj.Spec.JobTemplate.Spec
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("CronJob %s: concurrencyPolicy %q, want Forbid (two runs would write the same shards)", cj.Name, cj.Spec.ConcurrencyPolicy)
		}
	}
	if len(specs) < 3 {
		t.Fatalf("want the training-set and backfill Jobs and the nightly CronJob, got %v", sortedKeys(specs))
	}
	// The namespace's policies (prod) and the jobs' own.
	pols := append(slices.Clone(prod.netpols), jobs.netpols...)
	ns := map[string]string{"kubernetes.io/metadata.name": "tributary"}
	commands := map[string]bool{}
	for _, name := range sortedKeys(specs) {
		s := specs[name]
		t.Run(name, func(t *testing.T) {
			if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion || s.Completions == nil || *s.Completions < 1 {
				t.Fatalf("want an Indexed Job with completions, got mode %v completions %v", s.CompletionMode, s.Completions)
			}
			if s.Parallelism == nil || *s.Parallelism > *s.Completions {
				t.Errorf("parallelism %v, want at most the %d completions", s.Parallelism, *s.Completions)
			}
			pod := &s.Template.Spec
			c := &pod.Containers[0]
			if !slices.Equal(c.Command, []string{"tributary"}) || len(c.Args) == 0 {
				t.Fatalf("command %v args %v, want tributary <command> ...", c.Command, c.Args)
			}
			commands[c.Args[0]] = true
			args := map[string]string{}
			for i := 1; i < len(c.Args); i++ {
				k, ok := strings.CutPrefix(c.Args[i], "--")
				if !ok || i+1 == len(c.Args) {
					t.Fatalf("argument %q is not --flag value", c.Args[i])
				}
				args[k] = c.Args[i+1]
				i++
			}
			if want := fmt.Sprintf("$(JOB_COMPLETION_INDEX)/%d", *s.Completions); args["shard"] != want {
				t.Errorf("--shard %q, want %q (one shard per completion index)", args["shard"], want)
			}
			if v := args["offline"]; v != prodEnv("offline", "TRIBUTARY_OFFLINE") {
				t.Errorf("--offline %q, the offline service archives to %q", v, prodEnv("offline", "TRIBUTARY_OFFLINE"))
			}
			if v, ok := args["kafka-brokers"]; ok && v != prodEnv("featurizer", "TRIBUTARY_KAFKA_BROKERS") {
				t.Errorf("--kafka-brokers %q, the services use %q", v, prodEnv("featurizer", "TRIBUTARY_KAFKA_BROKERS"))
			}
			files, errs := materialize(jobs, pod, c, nil, external, t.TempDir())
			for _, err := range errs {
				t.Error(err)
			}
			if local, _, err := files.resolve(args["features-dir"]); err != nil {
				t.Errorf("--features-dir: %v", err)
			} else if err := sameTree(exampleFeatures, local); err != nil {
				t.Errorf("--features-dir %s is not examples/fraud/features: %v", args["features-dir"], err)
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil {
					checkEnvRef(t, jobs, name, e, external)
				}
			}
			if pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy %q, want Never (backoffLimitPerIndex retries an index in a new pod)", pod.RestartPolicy)
			}
			// Reach the archive (HTTPS) and, when it publishes, Kafka.
			self := s.Template.Labels
			if !egressToInternet(pols, self, ns, 443) {
				t.Error("no NetworkPolicy lets the job reach object storage (443)")
			}
			if _, ok := args["kafka-brokers"]; ok {
				kafkaPods := map[string]string{"strimzi.io/cluster": "tributary", "strimzi.io/kind": "Kafka"}
				if !allowed(pols, networkingv1.PolicyTypeEgress, self, kafkaPods, ns, 9092) {
					t.Error("no NetworkPolicy lets the job reach Kafka")
				}
				if !slices.ContainsFunc(prod.kafkas[0].Spec.Kafka.Listeners[0].NetworkPolicyPeers, func(p networkingv1.NetworkPolicyPeer) bool { return peerMatches(p, self, ns) }) {
					t.Error("Kafka's plain listener does not admit the job's pods")
				}
			}
		})
	}
	for _, want := range []string{"training-set", "backfill"} {
		if !commands[want] {
			t.Errorf("no job runs tributary %s", want)
		}
	}
}

// egressToInternet reports whether a pod may open port to an address
// outside the cluster (an ipBlock rule).
func egressToInternet(pols []*networkingv1.NetworkPolicy, self, ns map[string]string, port int) bool {
	for _, p := range pols {
		if !selectorMatches(&p.Spec.PodSelector, self) || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			continue
		}
		for _, rule := range p.Spec.Egress {
			if !portMatches(rule.Ports, port) {
				continue
			}
			if len(rule.To) == 0 || slices.ContainsFunc(rule.To, func(peer networkingv1.NetworkPolicyPeer) bool { return peer.IPBlock != nil }) {
				return true
			}
		}
	}
	return false
}
