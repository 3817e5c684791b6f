package plugin

import (
	"fmt"
	"strconv"
	"strings"
)

// Path is how a runtime's containers are held to their policy, chosen by
// what the runtime's NRI does (it tells its name and version at
// Configure). Each guarantee holds on each path, or the container does not
// start: docs/install.md has the table.
type Path int

const (
	// PathStart: the seccomp policy is adjusted at CreateContainer, and the
	// policy attached at StartContainer, which carries the init process's
	// pid (alone in its cgroup, before the container's program) and whose
	// error refuses the container. containerd 2.x.
	PathStart Path = iota
	// PathHook: the plugin decides at CreateContainer (an invalid policy
	// refuses the container there), leaves the decision for nriguard's OCI
	// hook and adds that hook to the container (createRuntime): the hook
	// attaches and checks that the container's seccomp policy keeps its
	// sockets to those the hooks judge; a failing hook stops the container.
	// For runtimes whose StartContainer does not fail closed (CRI-O: no pid
	// there, errors ignored) or that cannot take a seccomp adjustment from a
	// plugin (containerd 1.7, CRI-O: its NRI v0.11 crashes converting a
	// seccomp rule that has an errno): the seccomp policy is restricted by
	// nriguard-runc (the runtime's binary) or by the runtime's own profile.
	PathHook
)

func (p Path) String() string {
	if p == PathStart {
		return "start"
	}
	return "hook"
}

// PathFor chooses the path for a runtime, saying why. An unknown runtime
// gets the hook path: a hook that fails stops any OCI runtime's container.
func PathFor(runtime, version string) (Path, string) {
	major, minor, ok := parseVersion(version)
	switch {
	case runtime == "containerd" && ok && major >= 2:
		return PathStart, fmt.Sprintf("containerd %s: StartContainer fails closed and seccomp adjustments are applied", version)
	case runtime == "containerd":
		return PathHook, fmt.Sprintf("containerd %s (NRI before v0.10, found in %d.%d): no seccomp adjustments: the OCI hook attaches and checks the seccomp policy", version, major, minor)
	case runtime == "cri-o":
		return PathHook, fmt.Sprintf("CRI-O %s: StartContainer has no pid and its errors do not stop the container: the OCI hook attaches and checks the seccomp policy", version)
	}
	return PathHook, fmt.Sprintf("runtime %q %s is not known: the OCI hook attaches and checks the seccomp policy", runtime, version)
}

// parseVersion reads "v2.4.2", "2.4.2", "1.7.35-xyz".
func parseVersion(v string) (major, minor int, ok bool) {
	f := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(f) < 2 {
		return 0, 0, false
	}
	digits := func(s string) string { // "35-rc1" -> "35"
		if i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			return s[:i]
		}
		return s
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(f[0])
	minor, err2 = strconv.Atoi(digits(f[1]))
	return major, minor, err1 == nil && err2 == nil
}
