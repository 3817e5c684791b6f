// Package oci is nriguard's OCI path, for containers that never reach an
// NRI plugin (podman, nerdctl, ctr): the hook the runtime runs at
// createRuntime and poststop, and the runc wrapper that adds that hook to
// runtimes without hooks.d.
package oci

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/labels"
	"github.com/nriguard/nriguard/seccomp"
)

// Hook handles one OCI hook invocation, for containers that never reach NRI
// (podman, nerdctl, ctr): the runtime writes the container's state to stdin.
//
//   - createRuntime (or prestart): the container's namespaces and cgroup
//     exist, its init process is in the cgroup and has not run the
//     container's program. Decide its policy from its annotations and attach
//     it. An error makes the runtime refuse to start the container.
//   - poststop: detach.
//
// The pins are keyed by container id like the NRI plugin's, so when both see
// the same container (CRI-O runs hooks and NRI plugins), the second attach
// finds the first's and changes nothing.
func Hook(eng *engine.Engine, stage string, stdin io.Reader) error {
	var st specs.State
	if err := json.NewDecoder(stdin).Decode(&st); err != nil {
		return fmt.Errorf("hook %s: read the container state from stdin: %w", stage, err)
	}
	if st.ID == "" {
		return fmt.Errorf("hook %s: the container state has no id", stage)
	}
	switch stage {
	case "createRuntime", "prestart":
		return hookAttach(eng, &st)
	case "poststop":
		return eng.Detach(st.ID)
	}
	return fmt.Errorf("hook: unknown stage %q: expected createRuntime, prestart or poststop", stage)
}

// HookHandoff is the hook the NRI plugin adds to a container on runtimes
// where it cannot attach itself with a failure that stops the container
// (plugin.PathHook): at createRuntime it attaches the decision the plugin
// left in dir, after checking that the container's seccomp policy keeps
// its sockets to those the cgroup hooks judge. Any failure stops the
// container.
func HookHandoff(eng *engine.Engine, dir, stage string, stdin io.Reader) error {
	var st specs.State
	if err := json.NewDecoder(stdin).Decode(&st); err != nil {
		return fmt.Errorf("hook %s: read the container state from stdin: %w", stage, err)
	}
	if stage != "createRuntime" && stage != "prestart" {
		return fmt.Errorf("hook --handoff: stage %q: expected createRuntime", stage)
	}
	c, d, err := engine.ReadHandoff(dir, st.ID)
	if err != nil {
		return err
	}
	// taken, whatever comes of it: a refused container is not started again
	defer engine.RemoveHandoff(dir, st.ID)
	spec, err := readSpec(st.Bundle)
	if err != nil {
		return err
	}
	if err := attachState(eng, &st, spec, c, d, "the runtime cannot take a seccomp policy from nriguard's plugin: "+
		"make nriguard-runc the runtime's binary (it restricts the policy of containers the plugin marks), "+
		"or give the runtime nriguard's profile as its default (nriguard seccomp --from PROFILE)"); err != nil {
		return err
	}
	return nil
}

func hookAttach(eng *engine.Engine, st *specs.State) error {
	spec, err := readSpec(st.Bundle)
	if err != nil {
		return err
	}
	ann := map[string]string{}
	for k, v := range spec.Annotations {
		ann[k] = v
	}
	for k, v := range st.Annotations {
		ann[k] = v
	}
	c := engine.Container{ID: st.ID, Name: labels.ContainerName(ann), Annotations: ann}
	d, err := eng.Decide(c)
	if err != nil {
		return err
	}
	return attachState(eng, st, spec, c, d, "give it nriguard's seccomp profile "+
		"(nriguard seccomp --from /usr/share/containers/seccomp.json > F; podman run --security-opt seccomp=F), "+
		"or run it with nriguard-runc as its runtime, which does")
}

// attachState attaches d to the container a hook's state describes; under
// an egress policy its seccomp policy must already keep its sockets to the
// families the cgroup hooks judge (remedy says how to get there).
func attachState(eng *engine.Engine, st *specs.State, spec *specs.Spec, c engine.Container, d *engine.Decision, remedy string) error {
	if d.Empty() {
		return nil
	}
	if st.Pid == 0 {
		return fmt.Errorf("container %s: the runtime gave no process id: run the hook at createRuntime or prestart", st.ID)
	}
	// Too late to change the container's seccomp policy here (the runtime
	// has read it): under an egress policy it must already keep sockets to
	// the families the hooks judge, or the container does not start.
	if len(d.Egress()) > 0 {
		var sc *specs.LinuxSeccomp
		if spec.Linux != nil {
			sc = spec.Linux.Seccomp
		}
		if err := seccomp.Check(sc); err != nil {
			return fmt.Errorf("container %s has an egress policy, but %v: %s", st.ID, err, remedy)
		}
	}
	cg, err := cgroup.OfPid(st.Pid)
	if err != nil {
		return err
	}
	return eng.Attach(c, d, cg, containerRoot(st, spec))
}

// containerRoot is the container's root as the container will see it, at
// createRuntime: its init process has made its mount namespace (the
// rootfs and the volumes mounted in it) but not yet pivoted into the
// rootfs, so the rootfs is at the spec's path inside that namespace, which
// /proc/<pid>/root enters. (The same path in the host's namespace shows
// neither the volumes nor what a mount shadows.)
func containerRoot(st *specs.State, spec *specs.Spec) string {
	root := "/"
	if spec.Root != nil && spec.Root.Path != "" {
		root = spec.Root.Path
		if !filepath.IsAbs(root) {
			root = filepath.Join(st.Bundle, root)
		}
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", st.Pid), root)
}

func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's config: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &s, nil
}
