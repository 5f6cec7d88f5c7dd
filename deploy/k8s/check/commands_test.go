package check

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The batch jobs run `tributary <command>`: what the commands and their
// flags are is taken from the code itself, by building cmd/tributary and
// running `tributary <command> -h` (the coordinator's command code stays
// where it is; its help output is the one place that lists the flags).

// commandFlag is one flag of a command as `-h` prints it.
type commandFlag struct {
	name string
	typ  string // "" for a boolean, else the type word flag.PrintDefaults prints (string, int, duration, value...)
}

// binDir holds the built binary; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var tributaryBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tributary-k8s-check-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "tributary")
	// Built from the module's directory, so it works in the workspace and
	// with GOWORK=off (the module's replace directives) alike.
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(repoRoot, "cmd", "tributary")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tributary: %v\n%s", err, out)
	}
	return bin, nil
})

// usageFlagRE matches a flag line of flag.PrintDefaults: "  -name" (a
// boolean) or "  -name type".
var usageFlagRE = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: (\S+))?$`)

// tributaryCommandFlags runs `tributary <name> -h` and returns the
// command's flags; an error when there is no such command.
func tributaryCommandFlags(t *testing.T, name string) (map[string]commandFlag, error) {
	t.Helper()
	bin, err := tributaryBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, name, "-h")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	return parseCommandHelp(name, out.Bytes(), runErr)
}

// parseCommandHelp reads a command's `-h` output: "Usage of NAME:" and
// then flag.PrintDefaults' lines.
func parseCommandHelp(name string, help []byte, runErr error) (map[string]commandFlag, error) {
	sc := bufio.NewScanner(bytes.NewReader(help))
	flags := map[string]commandFlag{}
	usage := false
	for sc.Scan() {
		line := sc.Text()
		if line == "Usage of "+name+":" {
			usage = true
			continue
		}
		if m := usageFlagRE.FindStringSubmatch(line); usage && m != nil {
			flags[m[1]] = commandFlag{name: m[1], typ: m[2]}
		}
	}
	if !usage || runErr != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(help)), "\n")
		return nil, fmt.Errorf("tributary %s is not a command (tributary %s -h: %v: %s)", name, name, runErr, first)
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("tributary %s -h lists no flags", name)
	}
	return flags, nil
}

// parseCommandArgs parses a job's arguments (after the command name) the
// way the command's flag set does, with a flag set rebuilt from its `-h`
// (booleans take no value; int and duration values must parse). It
// returns the values given, by flag name.
func parseCommandArgs(name string, flags map[string]commandFlag, args []string, subst map[string]string) (map[string]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	for _, f := range flags {
		switch f.typ {
		case "":
			fs.Bool(f.name, false, "")
		case "int", "int64", "uint", "uint64":
			fs.Int64(f.name, 0, "")
		case "float":
			fs.Float64(f.name, 0, "")
		case "duration":
			fs.Duration(f.name, 0, "")
		default:
			fs.String(f.name, "", "")
		}
	}
	expanded := make([]string, len(args))
	for i, a := range args {
		for k, v := range subst {
			a = strings.ReplaceAll(a, k, v)
		}
		expanded[i] = a
	}
	if err := fs.Parse(expanded); err != nil {
		return nil, fmt.Errorf("tributary %s %s: %v", name, strings.Join(args, " "), err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("tributary %s: unexpected argument %q", name, fs.Arg(0))
	}
	// The values as written (before substitution), by flag.
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = "" })
	for i := 0; i < len(args); i++ {
		k := strings.TrimLeft(args[i], "-")
		k, v, hasValue := strings.Cut(k, "=")
		if !hasValue && flags[k].typ != "" && i+1 < len(args) {
			v = args[i+1]
			i++
		} else if !hasValue {
			v = "true"
		}
		given[k] = v
	}
	return given, nil
}

// TestCommandHelpParsing: the parser reads flag.PrintDefaults' format and
// refuses what is not a command's help.
func TestCommandHelpParsing(t *testing.T) {
	help := "Usage of training-set:\n  -event-time-only\n    \tcount every record\n  -shard string\n    \ti/N\n  -repartition-partitions int\n    \tpartitions\n"
	flags, err := parseCommandHelp("training-set", []byte(help), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(flags) != 3 || flags["event-time-only"].typ != "" || flags["shard"].typ != "string" || flags["repartition-partitions"].typ != "int" {
		t.Fatalf("parsed %v", flags)
	}
	if _, err := parseCommandHelp("backfill", []byte("tributary: unknown command \"backfill\"\n\nusage: tributary <command> [flags]\n  -x\n"), fmt.Errorf("exit status 2")); err == nil {
		t.Error("an unknown command parsed as a command")
	}
	args := []string{"--shard", "$(JOB_COMPLETION_INDEX)/8", "--event-time-only", "--repartition-partitions", "8"}
	got, err := parseCommandArgs("training-set", flags, args, map[string]string{"$(JOB_COMPLETION_INDEX)": "0"})
	if err != nil {
		t.Fatal(err)
	}
	if got["shard"] != "$(JOB_COMPLETION_INDEX)/8" || got["event-time-only"] != "true" || got["repartition-partitions"] != "8" {
		t.Errorf("args %v", got)
	}
	for _, bad := range [][]string{{"--view", "x"}, {"--repartition-partitions", "eight"}, {"--shard"}, {"stray"}} {
		if _, err := parseCommandArgs("training-set", flags, bad, nil); err == nil {
			t.Errorf("%v parsed", bad)
		}
	}
}
