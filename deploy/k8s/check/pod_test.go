package check

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// externalSecret is a Secret the manifests read but do not create: made by
// an operator from a resource in the render, or by the person deploying
// (documented in README.md's Secrets table).
type externalSecret struct {
	keys []string
	from string
}

// secretsFromREADME parses the table under "## Secrets" in deploy/k8s/README.md:
// | `name` | `key`, `key` | ... |
func secretsFromREADME() (map[string]externalSecret, error) {
	b, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(b), "\n## Secrets\n")
	if !ok {
		return nil, fmt.Errorf("deploy/k8s/README.md has no \"## Secrets\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	code := regexp.MustCompile("`([^`]+)`")
	out := map[string]externalSecret{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		name := code.FindStringSubmatch(cells[1])[1]
		var keys []string
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			keys = append(keys, m[1])
		}
		out[name] = externalSecret{keys: keys, from: "README.md"}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("deploy/k8s/README.md: the Secrets table lists no secret")
	}
	return out, nil
}

// operatorSecrets are the Secrets the operators create from resources in r.
func operatorSecrets(r *rendered) map[string]externalSecret {
	out := map[string]externalSecret{}
	for _, c := range r.pgClusters {
		keys := []string{"username", "password", "uri", "host", "port", "dbname", "pgpass", "jdbc-uri"}
		out[c.Metadata.Name+"-app"] = externalSecret{keys: keys, from: "CloudNativePG Cluster " + c.Metadata.Name}
		out[c.Metadata.Name+"-superuser"] = externalSecret{keys: keys, from: "CloudNativePG Cluster " + c.Metadata.Name}
	}
	for _, u := range r.users {
		out[u.Metadata.Name] = externalSecret{keys: []string{"password", "sasl.jaas.config"}, from: "Strimzi KafkaUser " + u.Metadata.Name}
	}
	return out
}

// secretKeys returns the keys of a Secret the pod may read, and whether it exists.
func (r *rendered) secretKeys(name string, external map[string]externalSecret) ([]string, bool) {
	for _, s := range r.secrets {
		if s.Name == name {
			keys := sortedKeys(s.Data)
			return append(keys, sortedKeys(s.StringData)...), true
		}
	}
	if e, ok := operatorSecrets(r)[name]; ok {
		return e.keys, true
	}
	if e, ok := external[name]; ok {
		return e.keys, true
	}
	return nil, false
}

// podFiles lays a pod's volumes out under a temporary root the way the
// kubelet would (ConfigMap and Secret items at their paths), so the
// services' own loaders can read what the container would see.
type podFiles struct {
	root   string
	mounts map[string]mountInfo // mountPath -> what is there
}

type mountInfo struct {
	dir      string // on this machine
	writable bool   // emptyDir or a persistent volume, mounted read-write
	source   string // "configMap NAME", "secret NAME", "emptyDir", "pvc NAME"
}

func materialize(r *rendered, pod *corev1.PodSpec, c *corev1.Container, claims []string, external map[string]externalSecret, root string) (*podFiles, []error) {
	pf := &podFiles{root: root, mounts: map[string]mountInfo{}}
	var errs []error
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for i, vm := range c.VolumeMounts {
		dir := filepath.Join(root, fmt.Sprintf("mount%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, []error{err}
		}
		v, ok := vols[vm.Name]
		if !ok {
			if slices.Contains(claims, vm.Name) {
				pf.mounts[vm.MountPath] = mountInfo{dir: dir, writable: !vm.ReadOnly, source: "pvc " + vm.Name}
				continue
			}
			errs = append(errs, fmt.Errorf("volumeMount %s: no volume or volume claim template of that name", vm.Name))
			continue
		}
		switch {
		case v.ConfigMap != nil:
			cm := r.configMap(v.ConfigMap.Name)
			if cm == nil {
				errs = append(errs, fmt.Errorf("volume %s: ConfigMap %s is not in the render", v.Name, v.ConfigMap.Name))
				continue
			}
			data := map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				data[k] = b
			}
			errs = append(errs, project(dir, data, v.ConfigMap.Items, "ConfigMap "+cm.Name)...)
			pf.mounts[vm.MountPath] = mountInfo{dir: dir, source: "configMap " + trimHash(cm.Name)}
		case v.Secret != nil:
			keys, ok := r.secretKeys(v.Secret.SecretName, external)
			if !ok {
				errs = append(errs, fmt.Errorf("volume %s: Secret %s is neither rendered, nor made by an operator in the render, nor listed in README.md's Secrets", v.Name, v.Secret.SecretName))
				continue
			}
			data := map[string][]byte{}
			for _, k := range keys {
				data[k] = []byte("secret " + v.Secret.SecretName + "/" + k)
			}
			for _, s := range r.secrets {
				if s.Name == v.Secret.SecretName {
					for k, b := range s.Data {
						data[k] = b
					}
				}
			}
			errs = append(errs, project(dir, data, v.Secret.Items, "Secret "+v.Secret.SecretName)...)
			pf.mounts[vm.MountPath] = mountInfo{dir: dir, source: "secret " + trimHash(v.Secret.SecretName)}
		case v.EmptyDir != nil:
			pf.mounts[vm.MountPath] = mountInfo{dir: dir, writable: !vm.ReadOnly, source: "emptyDir"}
		case v.PersistentVolumeClaim != nil:
			pf.mounts[vm.MountPath] = mountInfo{dir: dir, writable: !vm.ReadOnly, source: "pvc " + v.PersistentVolumeClaim.ClaimName}
		default:
			errs = append(errs, fmt.Errorf("volume %s: a kind this check does not know", v.Name))
		}
	}
	return pf, errs
}

func project(dir string, data map[string][]byte, items []corev1.KeyToPath, what string) []error {
	var errs []error
	if len(items) == 0 {
		for k, b := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
			_ = b
		}
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			errs = append(errs, fmt.Errorf("%s has no key %s", what, it.Key))
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(it.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// resolve maps a path inside the container to this machine. A path on no
// volume is an error: the root file system is read-only and the image
// carries only the binaries and the example.
func (pf *podFiles) resolve(p string) (string, mountInfo, error) {
	best := ""
	for m := range pf.mounts {
		if (p == m || strings.HasPrefix(p, strings.TrimSuffix(m, "/")+"/")) && len(m) > len(best) {
			best = m
		}
	}
	if best == "" {
		return "", mountInfo{}, fmt.Errorf("%s is on no volume of the pod", p)
	}
	mi := pf.mounts[best]
	return filepath.Join(mi.dir, strings.TrimPrefix(p, best)), mi, nil
}

// sameTree reports the first difference between two directory trees
// (regular files, followed links), or nil.
func sameTree(a, b string) error {
	read := func(root string) (map[string][]byte, error) {
		out := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[filepath.ToSlash(rel)] = b
			return nil
		})
		return out, err
	}
	fa, err := read(a)
	if err != nil {
		return err
	}
	fb, err := read(b)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(fa) {
		if vb, ok := fb[k]; !ok {
			return fmt.Errorf("%s is missing", k)
		} else if !bytes.Equal(fa[k], vb) {
			return fmt.Errorf("%s differs", k)
		}
	}
	for _, k := range sortedKeys(fb) {
		if _, ok := fa[k]; !ok {
			return fmt.Errorf("%s is extra", k)
		}
	}
	return nil
}
