package oci

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/labels"
	"github.com/nriguard/nriguard/seccomp"
)

// RuncWrapperName is what the wrapper is installed as (a link to nriguard).
const RuncWrapperName = "nriguard-runc"

// ConfigEnv overrides where the hook (and so the runc wrapper's hooks) read
// the node settings.
const ConfigEnv = "NRIGUARD_CONFIG"

// Runc is a runc-compatible runtime for runtimes that have no hooks.d
// (nerdctl, ctr): on "create" or "run" of a container that has a policy it
// adds nriguard's createRuntime and poststop hooks to the bundle's
// config.json (addHooks), then it execs the real runc with the same
// arguments ($NRIGUARD_RUNC, or runc in PATH). It returns only on failure.
func Runc(args []string) int {
	if bundle, ok := runcBundle(args); ok {
		if err := addHooks(bundle); err != nil {
			fmt.Fprintln(os.Stderr, "nriguard-runc:", err)
			return 1
		}
	}
	if root, process, id, ok := runcExec(args); ok {
		if err := boundExec(root, process, id); err != nil {
			fmt.Fprintln(os.Stderr, "nriguard-runc:", err)
			return 1
		}
	}
	runc := os.Getenv("NRIGUARD_RUNC")
	if runc == "" {
		var err error
		if runc, err = exec.LookPath("runc"); err != nil {
			fmt.Fprintln(os.Stderr, "nriguard-runc: no runc in PATH (set NRIGUARD_RUNC)")
			return 1
		}
	}
	err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	fmt.Fprintln(os.Stderr, "nriguard-runc: exec", runc+":", err)
	return 1
}

// runcGlobalValueFlags are runc's global flags that take a value; the others
// are booleans.
var runcGlobalValueFlags = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

// runcExecValueFlags are runc exec's flags that take a value.
var runcExecValueFlags = map[string]bool{"--process": true, "-p": true, "--console-socket": true, "--pid-file": true,
	"--cwd": true, "--env": true, "-e": true, "--user": true, "-u": true, "--additional-gids": true, "-g": true,
	"--cap": true, "-c": true, "--apparmor": true, "--process-label": true, "--preserve-fds": true, "--cgroup": true}

// runcExec finds an "exec --process FILE ... ID" command line (how
// containerd runs a process in a container), and runc's state root.
func runcExec(args []string) (root, process, id string, ok bool) {
	root = "/run/runc"
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		if a := args[i]; a == "--root" && i+1 < len(args) {
			root = args[i+1]
			i++
		} else if v, found := strings.CutPrefix(a, "--root="); found {
			root = v
		} else if runcGlobalValueFlags[a] {
			i++
		}
	}
	if i >= len(args) || args[i] != "exec" {
		return "", "", "", false
	}
	for i++; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--process" || a == "-p":
			if i+1 < len(args) {
				process = args[i+1]
			}
			i++
		case strings.HasPrefix(a, "--process="):
			process = strings.TrimPrefix(a, "--process=")
		case runcExecValueFlags[a]:
			i++
		case !strings.HasPrefix(a, "-") && id == "":
			id = a
		}
	}
	return root, process, id, process != "" && id != ""
}

// boundExec keeps a process run in a container (runc exec) to the
// capabilities its init was given: containerd writes the exec'd process's
// capabilities from its own copy of the spec, which never saw what
// addHooks took away (CAP_NET_RAW).
func boundExec(root, process, id string) error {
	data, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		return nil // not a container runc knows: runc will say so
	}
	var state struct {
		Config struct {
			Capabilities *struct{ Bounding []string } `json:"capabilities"`
		} `json:"config"`
	}
	if err := json.Unmarshal(data, &state); err != nil || state.Config.Capabilities == nil {
		return nil
	}
	bounding := state.Config.Capabilities.Bounding
	pdata, err := os.ReadFile(process)
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	var p specs.Process
	if err := json.Unmarshal(pdata, &raw); err != nil {
		return fmt.Errorf("%s: %w", process, err)
	}
	if err := json.Unmarshal(pdata, &p); err != nil || p.Capabilities == nil {
		return err
	}
	keep := func(l []string) []string {
		return slices.DeleteFunc(slices.Clone(l), func(c string) bool { return !slices.Contains(bounding, c) })
	}
	c := *p.Capabilities
	c.Bounding, c.Effective, c.Inheritable = keep(c.Bounding), keep(c.Effective), keep(c.Inheritable)
	c.Permitted, c.Ambient = keep(c.Permitted), keep(c.Ambient)
	if raw["capabilities"], err = json.Marshal(c); err != nil {
		return err
	}
	out, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return os.WriteFile(process, out, 0o600)
}

// runcBundle finds the bundle of a "create" or "run" command line: runc
// [global flags] create|run [--bundle|-b DIR] ... ID.
func runcBundle(args []string) (string, bool) {
	cmd := -1
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if runcGlobalValueFlags[a] {
				i++ // its value
			}
			continue
		}
		if a != "create" && a != "run" {
			return "", false // another command
		}
		cmd = i
		break
	}
	if cmd < 0 {
		return "", false
	}
	for i := cmd + 1; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == "--bundle" || a == "-b") && i+1 < len(args):
			return args[i+1], true
		case strings.HasPrefix(a, "--bundle="):
			return strings.TrimPrefix(a, "--bundle="), true
		}
	}
	wd, err := os.Getwd()
	return wd, err == nil
}

// addHooks adds nriguard's hooks to bundle/config.json when the node's
// settings and the container's annotations give it a policy (or one that
// does not parse: the hook then refuses the container, saying why); a
// container without one runs untouched. Under an egress policy its seccomp
// policy is restricted to the sockets the hooks judge and CAP_NET_RAW is
// taken away (seccomp.Restrict; docs/policy.md).
func addHooks(bundle string) error {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Rewrite only what nriguard changes, keeping every other field as the
	// runtime wrote it.
	var raw map[string]json.RawMessage
	var spec specs.Spec
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// A container the NRI plugin marked (its runtime takes no seccomp
	// adjustment from it): restrict it; the plugin's own hook attaches.
	marked := spec.Annotations[labels.RestrictSockets] == "true"
	var d *engine.Decision
	var derr error // an invalid policy: the hook refuses the container, saying why
	if !marked {
		cfg, err := engine.LoadConfig(configPath())
		if err != nil {
			return err
		}
		d, derr = engine.Decide(cfg, engine.Container{Name: labels.ContainerName(spec.Annotations), Annotations: spec.Annotations})
		if derr == nil && d.Empty() {
			return nil
		}
	}
	if marked || derr == nil && len(d.Egress()) > 0 {
		var sc *specs.LinuxSeccomp
		if spec.Linux != nil {
			sc = spec.Linux.Seccomp
		}
		if err := setField(raw, "linux", "seccomp", seccomp.Restrict(sc)); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if spec.Process != nil && spec.Process.Capabilities != nil {
			if err := setField(raw, "process", "capabilities", withoutNetRaw(spec.Process.Capabilities)); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	if marked {
		return writeSpec(path, raw)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := []string{}
	if v := os.Getenv(ConfigEnv); v != "" {
		env = append(env, ConfigEnv+"="+v)
	}
	hooks := spec.Hooks
	if hooks == nil {
		hooks = &specs.Hooks{}
	}
	hooks.CreateRuntime = append(hooks.CreateRuntime, specs.Hook{Path: self, Args: []string{"nriguard", "hook", "createRuntime"}, Env: env})
	hooks.Poststop = append(hooks.Poststop, specs.Hook{Path: self, Args: []string{"nriguard", "hook", "poststop"}, Env: env})
	if raw["hooks"], err = json.Marshal(hooks); err != nil {
		return err
	}
	return writeSpec(path, raw)
}

func writeSpec(path string, raw map[string]json.RawMessage) error {
	out, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// configPath is where the hook will read the node settings.
func configPath() string {
	if v := os.Getenv(ConfigEnv); v != "" {
		return v
	}
	return engine.DefaultConfigPath
}

// setField sets raw[object][field] = v, keeping the object's other fields.
func setField(raw map[string]json.RawMessage, object, field string, v any) error {
	var m map[string]json.RawMessage
	if raw[object] != nil {
		if err := json.Unmarshal(raw[object], &m); err != nil {
			return fmt.Errorf("%s: %w", object, err)
		}
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	var err error
	if m[field], err = json.Marshal(v); err != nil {
		return err
	}
	raw[object], err = json.Marshal(m)
	return err
}

// withoutNetRaw is c without CAP_NET_RAW in any set: it makes raw and
// packet sockets, sets IP options and binds to devices.
func withoutNetRaw(c *specs.LinuxCapabilities) *specs.LinuxCapabilities {
	drop := func(l []string) []string {
		return slices.DeleteFunc(slices.Clone(l), func(s string) bool { return s == "CAP_NET_RAW" })
	}
	out := *c
	out.Bounding, out.Effective, out.Inheritable = drop(c.Bounding), drop(c.Effective), drop(c.Inheritable)
	out.Permitted, out.Ambient = drop(c.Permitted), drop(c.Ambient)
	return &out
}
