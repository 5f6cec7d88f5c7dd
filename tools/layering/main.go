// Command layering checks the import layering Tributary promises
// (DESIGN.md §2, CONVENTIONS.md) over every module of the workspace, with
// `go list -deps -test -json`, tests included:
//
//   - a service's packages import only libs, proto and the service's own
//     packages: no service imports another (nor the CLI);
//   - libs imports no service and no CLI; proto imports only proto;
//   - a core package (internal/core of a service, and the pure libs the
//     featurizer, featureserver and offline share: tiles, aggregate,
//     featurespec, cdc, jsonenc, quantile) depends, even indirectly, on no adapter:
//     no network, database, Kafka or storage client, no service
//     lifecycle.
//
// It prints one line per violation and exits 1 when there is any.
//
//	go run . -root ../.. [module dir ...]
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Repo is the import path prefix of every package of the repository.
const Repo = "github.com/tributary-ml/tributary"

// Package is what `go list -json` says of one package (the fields used).
type Package struct {
	ImportPath string
	Module     *struct{ Path string }
	Imports    []string
	Deps       []string
	DepOnly    bool
	ForTest    string
	Error      *struct{ Err string }
}

// corePackages are the pure packages outside a service's internal/core.
var corePackages = []string{
	Repo + "/libs/tiles",
	Repo + "/libs/aggregate",
	Repo + "/libs/featurespec",
	Repo + "/libs/cdc",
	Repo + "/libs/jsonenc",
	Repo + "/libs/quantile",
}

// stdAdapters are the standard library packages that do network,
// database or process I/O.
var stdAdapters = map[string]bool{
	"net": true, "net/http": true, "net/rpc": true, "net/smtp": true, "database/sql": true, "os/exec": true,
}

// adapters are the package trees that do I/O for a service.
var adapters = []string{
	"google.golang.org/grpc",
	"github.com/segmentio/kafka-go",
	"github.com/twmb/franz-go",
	"github.com/gocql/gocql",
	"github.com/scylladb/gocqlx",
	"github.com/jackc/pgx",
	"github.com/startreedata/pinot-client-go",
	"go.etcd.io/bbolt",
	"github.com/cockroachdb/pebble",
	"gocloud.dev",
	Repo + "/libs/kafka",
	Repo + "/libs/kafkabroker",
	Repo + "/libs/service",
	Repo + "/libs/telemetry",
	Repo + "/libs/pgdev",
	Repo + "/libs/testutil",
}

// under reports whether path is pkg or inside pkg's tree.
func under(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

// base strips a test variant's suffix: "p [p.test]" → "p".
func base(path string) string {
	if i := strings.IndexByte(path, ' '); i >= 0 {
		return path[:i]
	}
	return path
}

// IsCore reports whether path is a core package.
func IsCore(path string) bool {
	rest, ok := strings.CutPrefix(path, Repo+"/services/")
	if ok {
		_, inner, _ := strings.Cut(rest, "/")
		if under(inner, "internal/core") {
			return true
		}
	}
	for _, c := range corePackages {
		if path == c {
			return true
		}
	}
	return false
}

// IsAdapter reports whether path does I/O for a service.
func IsAdapter(path string) bool {
	if stdAdapters[path] {
		return true
	}
	for _, a := range adapters {
		if under(path, a) {
			return true
		}
	}
	return false
}

// layer names the part of the repository path is in: "services/<name>",
// "libs", "proto", "cmd", "tools", or "" outside the repository.
func layer(path string) string {
	rest, ok := strings.CutPrefix(path, Repo+"/")
	if !ok {
		return ""
	}
	top, rest, _ := strings.Cut(rest, "/")
	if top == "services" {
		svc, _, _ := strings.Cut(rest, "/")
		// An external test package of the service's root: "<svc>_test".
		return "services/" + strings.TrimSuffix(svc, "_test")
	}
	return strings.TrimSuffix(top, "_test")
}

// allowed reports whether a package of layer from may import to.
func allowed(from, to string) bool {
	switch {
	case to == "" || from == "cmd" || from == "tools":
		return true
	case strings.HasPrefix(from, "services/"):
		return to == "libs" || to == "proto" || to == from
	case from == "libs":
		return to == "libs" || to == "proto"
	case from == "proto":
		return to == "proto"
	}
	return true
}

// Check returns one message per layering violation among pkgs (the output
// of `go list -deps -test -json` over a module).
func Check(pkgs []Package) []string {
	byPath := map[string]Package{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	seen := map[string]bool{}
	var out []string
	report := func(msg string) {
		if !seen[msg] {
			seen[msg] = true
			out = append(out, msg)
		}
	}
	for _, p := range pkgs {
		if p.DepOnly || strings.HasSuffix(p.ImportPath, ".test") {
			continue
		}
		from := base(p.ImportPath)
		fromLayer := layer(from)
		for _, imp := range p.Imports {
			to := base(imp)
			if !allowed(fromLayer, layer(to)) {
				report(fmt.Sprintf("%s imports %s: %s may import only %s", from, to, fromLayer, allowedText(fromLayer)))
			}
		}
		if !IsCore(from) {
			continue
		}
		if p.ForTest != "" {
			// A core package's own tests may start servers (loopback peers);
			// the rule is about the code that ships.
			continue
		}
		// The core and every package of the repository it depends on
		// import no adapter. (A third-party library is not an adapter for
		// what it imports itself: uuid imports net for node ids.)
		chain := []string{p.ImportPath}
		for _, d := range p.Deps {
			if layer(d) != "" && !IsAdapter(d) {
				chain = append(chain, d)
			}
		}
		for _, c := range chain {
			for _, imp := range byPath[c].Imports {
				if !IsAdapter(imp) {
					continue
				}
				through := ""
				if c != p.ImportPath {
					through = " (through " + base(c) + ")"
				}
				report(fmt.Sprintf("core package %s depends on adapter %s%s", from, imp, through))
			}
		}
	}
	sort.Strings(out)
	return out
}

func allowedText(l string) string {
	switch {
	case strings.HasPrefix(l, "services/"):
		return "libs, proto and " + l
	case l == "libs":
		return "libs and proto"
	case l == "proto":
		return "proto"
	}
	return "anything"
}

// list runs `go list -deps -test -json ./...` in dir.
func list(dir string) ([]Package, error) {
	cmd := exec.Command("go", "list", "-e", "-deps", "-test", "-json=ImportPath,Module,Imports,Deps,DepOnly,ForTest,Error", "./...")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var pkgs []Package
	dec := json.NewDecoder(bufio.NewReader(stdout))
	for {
		var p Package
		if err := dec.Decode(&p); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s: decode go list output: %w", dir, err)
		}
		if p.Error != nil && !p.DepOnly {
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s: %s: %s", dir, p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("%s: go list: %w: %s", dir, err, stderr.String())
	}
	return pkgs, nil
}

// modules reads the module directories of root's go.work.
func modules(root string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		return nil, err
	}
	var dirs []string
	inUse := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "use ("):
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "":
			dirs = append(dirs, filepath.Join(root, line))
		case strings.HasPrefix(line, "use "):
			dirs = append(dirs, filepath.Join(root, strings.TrimSpace(strings.TrimPrefix(line, "use "))))
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%s/go.work lists no module", root)
	}
	return dirs, nil
}

func main() {
	root := flag.String("root", ".", "the repository root (its go.work lists the modules)")
	flag.Parse()
	dirs := flag.Args()
	if len(dirs) == 0 {
		var err error
		if dirs, err = modules(*root); err != nil {
			fmt.Fprintln(os.Stderr, "layering:", err)
			os.Exit(2)
		}
	}
	bad := 0
	for _, dir := range dirs {
		pkgs, err := list(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "layering:", err)
			os.Exit(2)
		}
		for _, msg := range Check(pkgs) {
			fmt.Println(msg)
			bad++
		}
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "layering: %d violation(s)\n", bad)
		os.Exit(1)
	}
}
