package oci

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nriguard/nriguard/labels"
	"github.com/nriguard/nriguard/seccomp"
)

// RuncWrapperName is what the wrapper is installed as (a link to nriguard).
const RuncWrapperName = "nriguard-runc"

// ConfigEnv overrides where the hook (and so the runc wrapper's hooks) read
// the node settings.
const ConfigEnv = "NRIGUARD_CONFIG"

// Runc is a runc-compatible runtime for runtimes that have no hooks.d
// (nerdctl, ctr): on "create" or "run" of a container that carries an
// nriguard annotation it adds nriguard's createRuntime and poststop hooks to
// the bundle's config.json, then it execs the real runc with the same
// arguments ($NRIGUARD_RUNC, or runc in PATH). It returns only on failure.
func Runc(args []string) int {
	if bundle, ok := runcBundle(args); ok {
		if err := addHooks(bundle); err != nil {
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

// addHooks adds nriguard's hooks to bundle/config.json when an annotation
// names nriguard; a container without one runs untouched.
func addHooks(bundle string) error {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	var spec specs.Spec
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	labelled, egress := false, false
	for k := range spec.Annotations {
		if labels.IsPolicyKey(k) {
			labelled = true
		}
		if base, _, _ := strings.Cut(k, "/"); base == labels.Egress || base == labels.Profile {
			egress = true
		}
	}
	if !labelled {
		return nil
	}
	if egress {
		// AF_PACKET sockets never reach the cgroup hooks: refuse them in
		// the container's seccomp policy, as the NRI plugin does.
		var sc *specs.LinuxSeccomp
		if spec.Linux != nil {
			sc = spec.Linux.Seccomp
		}
		if p, ok := seccomp.DenyPacketSockets(sc); ok {
			var linux map[string]json.RawMessage
			if raw["linux"] != nil {
				if err := json.Unmarshal(raw["linux"], &linux); err != nil {
					return fmt.Errorf("%s: linux: %w", path, err)
				}
			}
			if linux == nil {
				linux = map[string]json.RawMessage{}
			}
			if linux["seccomp"], err = json.Marshal(p); err != nil {
				return err
			}
			if raw["linux"], err = json.Marshal(linux); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(os.Stderr, "nriguard-runc: warning: AF_PACKET sockets are not refused: the seccomp profile restricts socket() in a way nriguard cannot extend; drop CAP_NET_RAW")
		}
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
	// Rewrite only the hooks, keeping every other field as the runtime wrote it.
	if raw["hooks"], err = json.Marshal(hooks); err != nil {
		return err
	}
	out, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}
