package check

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestJobs checks the batch work in deploy/k8s/jobs against the code and
// the prod overlay: every Job and CronJob runs a `tributary` command that
// exists with flags it has (`tributary <command> -h`, commands_test.go);
// an Indexed Job's pods each take shard $(JOB_COMPLETION_INDEX) of as many
// shards as it has completions, and an unsharded one runs one pod; the
// feature views and models mounted are the example's; the archive, Kafka
// and Secrets are the prod overlay's; files read and written are on
// persistent volumes the render claims; the NetworkPolicies of the
// namespace let the pods reach what they use.
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
			t.Errorf("CronJob %s: concurrencyPolicy %q, want Forbid (two runs would write the same output)", cj.Name, cj.Spec.ConcurrencyPolicy)
		}
	}
	if len(specs) == 0 {
		t.Fatal("deploy/k8s/jobs renders no Jobs or CronJobs")
	}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, c := range jobs.pvcs {
		claims[c.Name] = c
	}
	// The namespace's policies (prod) and the jobs' own.
	pols := append(slices.Clone(prod.netpols), jobs.netpols...)
	ns := map[string]string{"kubernetes.io/metadata.name": "tributary"}
	commands := map[string]bool{}
	for _, name := range sortedKeys(specs) {
		s := specs[name]
		t.Run(name, func(t *testing.T) {
			pod := &s.Template.Spec
			c := &pod.Containers[0]
			if !slices.Equal(c.Command, []string{"tributary"}) || len(c.Args) == 0 {
				t.Fatalf("command %v args %v, want tributary <command> ...", c.Command, c.Args)
			}
			cmdName := c.Args[0]
			flags, err := tributaryCommandFlags(t, cmdName)
			if err != nil {
				t.Fatalf("the job runs a command the code does not have: %v", err)
			}
			commands[cmdName] = true
			args, err := parseCommandArgs(cmdName, flags, c.Args[1:], map[string]string{"$(JOB_COMPLETION_INDEX)": "0"})
			if err != nil {
				t.Fatal(err)
			}
			indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
			shard, sharded := args["shard"]
			switch {
			case indexed && (s.Completions == nil || *s.Completions < 1):
				t.Fatalf("an Indexed Job without completions: %v", s.Completions)
			case indexed:
				if want := fmt.Sprintf("$(JOB_COMPLETION_INDEX)/%d", *s.Completions); shard != want {
					t.Errorf("--shard %q, want %q (one shard per completion index)", shard, want)
				}
				if s.Parallelism == nil || *s.Parallelism > *s.Completions {
					t.Errorf("parallelism %v, want at most the %d completions", s.Parallelism, *s.Completions)
				}
			case sharded:
				t.Errorf("--shard %q in a Job that is not Indexed: every pod would compute the same shard", shard)
			default:
				if (s.Completions != nil && *s.Completions != 1) || (s.Parallelism != nil && *s.Parallelism != 1) {
					t.Errorf("completions %v parallelism %v: an unsharded command runs once", s.Completions, s.Parallelism)
				}
			}
			if v, ok := args["offline"]; ok && v != prodEnv("offline", "TRIBUTARY_OFFLINE") {
				t.Errorf("--offline %q, the offline service archives to %q", v, prodEnv("offline", "TRIBUTARY_OFFLINE"))
			}
			if v, ok := args["kafka-brokers"]; ok && v != prodEnv("featurizer", "TRIBUTARY_KAFKA_BROKERS") {
				t.Errorf("--kafka-brokers %q, the services use %q", v, prodEnv("featurizer", "TRIBUTARY_KAFKA_BROKERS"))
			}
			files, errs := materialize(jobs, pod, c, nil, external, t.TempDir())
			for _, err := range errs {
				t.Error(err)
			}
			for _, v := range pod.Volumes {
				if v.PersistentVolumeClaim == nil {
					continue
				}
				pvc, ok := claims[v.PersistentVolumeClaim.ClaimName]
				if !ok {
					t.Errorf("volume %s: PersistentVolumeClaim %s is not in the render", v.Name, v.PersistentVolumeClaim.ClaimName)
				} else if s.Parallelism != nil && *s.Parallelism > 1 && !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
					t.Errorf("volume %s: %d pods at once on any node need PersistentVolumeClaim %s ReadWriteMany, it is %v", v.Name, *s.Parallelism, pvc.Name, pvc.Spec.AccessModes)
				}
			}
			sameAs := map[string]string{"features-dir": exampleFeatures, "models": exampleModels}
			for _, f := range sortedKeys(sameAs) {
				v, ok := args[f]
				if !ok {
					if _, has := flags[f]; has {
						t.Errorf("--%s not given: the command's default is a path in the repository, not in the image", f)
					}
					continue
				}
				if local, _, err := files.resolve(v); err != nil {
					t.Errorf("--%s: %v", f, err)
				} else if err := sameTree(sameAs[f], local); err != nil {
					t.Errorf("--%s %s is not %s: %v", f, v, sameAs[f], err)
				}
			}
			// Files the command reads (--spine) and writes (--out) are
			// local: they must be on a persistent volume, the output on a
			// writable one, one output per shard.
			for _, f := range []string{"spine", "out"} {
				v, ok := args[f]
				if !ok {
					continue
				}
				if strings.Contains(v, "://") {
					t.Errorf("--%s %s: the command reads and writes local files only", f, v)
					continue
				}
				_, mi, err := files.resolve(filepath.Dir(v))
				switch {
				case err != nil:
					t.Errorf("--%s %s: %v", f, v, err)
				case !strings.HasPrefix(mi.source, "pvc "):
					t.Errorf("--%s %s is on %s, want a persistent volume (it must outlive the pod)", f, v, mi.source)
				case f == "out" && !mi.writable:
					t.Errorf("--out %s is on %s, which is not writable", v, mi.source)
				}
				if ext := filepath.Ext(v); ext != ".csv" && ext != ".parquet" {
					t.Errorf("--%s %s: want a .csv or .parquet file", f, v)
				}
			}
			if out, ok := args["out"]; ok && indexed && !strings.Contains(out, "$(JOB_COMPLETION_INDEX)") {
				t.Errorf("--out %s is the same file for every shard", out)
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil {
					checkEnvRef(t, jobs, name, e, external)
				}
			}
			if pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy %q, want Never (a failed run is retried in a new pod)", pod.RestartPolicy)
			}
			// Reach the archive (HTTPS) and, when it asks it, Kafka.
			self := s.Template.Labels
			if v := args["offline"]; strings.HasPrefix(v, "s3://") || strings.HasPrefix(v, "gs://") {
				if !egressToInternet(pols, self, ns, 443) {
					t.Error("no NetworkPolicy lets the job reach object storage (443)")
				}
			}
			if v := args["kafka-brokers"]; v != "" {
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
	for _, want := range []string{"training-set", "skew"} {
		if !commands[want] {
			t.Errorf("no job runs tributary %s", want)
		}
	}
	for _, pvc := range jobs.pvcs {
		used := false
		for _, s := range specs {
			used = used || slices.ContainsFunc(s.Template.Spec.Volumes, func(v corev1.Volume) bool {
				return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name
			})
		}
		if !used {
			t.Errorf("PersistentVolumeClaim %s: no job uses it", pvc.Name)
		}
	}
}

// TestOfflineReachable: the offline service's gRPC port (9104, where
// tributary.offline.v1.OfflineService serves GetTrainingSet) admits the
// training jobs and SDK clients (pods labelled
// tributary.io/offline-client: "true", in the namespace and from the jobs)
// and no other pod; the offline service may read Kafka.
func TestOfflineReachable(t *testing.T) {
	jobs, err := render("jobs")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"overlays/prod", "overlays/dev"} {
		r, err := render(dir)
		if err != nil {
			t.Fatal(err)
		}
		pols := append(slices.Clone(r.netpols), jobs.netpols...)
		ns := map[string]string{"kubernetes.io/metadata.name": "ns"}
		offlinePods := map[string]string{"app.kubernetes.io/name": "offline", "app.kubernetes.io/part-of": "tributary"}
		client := map[string]string{"tributary.io/offline-client": "true"}
		if !allowed(pols, networkingv1.PolicyTypeIngress, offlinePods, client, ns, 9104) {
			t.Errorf("%s: an offline client cannot reach offline:9104", dir)
		}
		if allowed(pols, networkingv1.PolicyTypeIngress, offlinePods, map[string]string{"app": "other"}, ns, 9104) {
			t.Errorf("%s: a pod without the offline-client label reaches offline:9104", dir)
		}
		var trainingJob map[string]string
		for _, j := range jobs.jobs {
			if len(j.Spec.Template.Spec.Containers) > 0 && slices.Contains(j.Spec.Template.Spec.Containers[0].Args[:1], "training-set") {
				trainingJob = j.Spec.Template.Labels
			}
		}
		if trainingJob == nil {
			t.Fatal("no training-set Job")
		}
		if !allowed(pols, networkingv1.PolicyTypeEgress, trainingJob, offlinePods, ns, 9104) || !allowed(pols, networkingv1.PolicyTypeIngress, offlinePods, trainingJob, ns, 9104) {
			t.Errorf("%s: the training-set Job's pods cannot reach offline:9104", dir)
		}
		kafkaPods := map[string]string{"strimzi.io/cluster": "tributary", "strimzi.io/kind": "Kafka"}
		if !allowed(pols, networkingv1.PolicyTypeEgress, offlinePods, kafkaPods, ns, 9092) {
			t.Errorf("%s: the offline service cannot reach Kafka", dir)
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
