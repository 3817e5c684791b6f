// Package labels reads nriguard's keys from the annotations and labels a
// container carries, following the scoping of NRI's own plugins:
//
//	<key>/container.<name>  on the pod: one container of the pod
//	<key>                   on the container (annotation or label): that container
//	<key>/pod               on the pod: every container of the pod
//	<key>                   on the pod: every container of the pod
//
// The first one present, in that order, wins: the most specific.
package labels

import (
	"slices"
	"strings"
)

// The keys of the label contract (docs/policy.md).
const (
	Egress  = "egress.nriguard.io"
	Mode    = "mode.nriguard.io"
	Exec    = "exec.nriguard.io"
	Profile = "profile.nriguard.io"
	// Visibility asks for more of what a policed container reports:
	// flows, execs or both; never less than the node's setting.
	Visibility = "visibility.nriguard.io"
)

// Sources are the key-value sets one container is seen with.
type Sources struct {
	Container string            // the container's name within its pod
	Pod       map[string]string // pod annotations
	// Own: the container's annotations, then its labels; OwnNames says what
	// each is, for explanations ("container annotation", "container label").
	Own      []map[string]string
	OwnNames []string
}

// Lookup returns the value of key for the container and the key it was found
// under, which is what error messages name.
func (s Sources) Lookup(key string) (value, foundAs string, ok bool) {
	v, as, _, ok := s.LookupWhere(key)
	return v, as, ok
}

// LookupWhere is Lookup that also says where the key was found: "pod
// annotation", or OwnNames' name for the container's own maps.
func (s Sources) LookupWhere(key string) (value, foundAs, where string, ok bool) {
	if s.Container != "" {
		if v, ok := s.Pod[key+"/container."+s.Container]; ok {
			return v, key + "/container." + s.Container, "pod annotation", true
		}
	}
	for i, m := range s.Own {
		if v, ok := m[key]; ok {
			where := "container annotation or label"
			if i < len(s.OwnNames) {
				where = s.OwnNames[i]
			}
			return v, key, where, true
		}
	}
	if v, ok := s.Pod[key+"/pod"]; ok {
		return v, key + "/pod", "pod annotation", true
	}
	if v, ok := s.Pod[key]; ok {
		return v, key, "pod annotation", true
	}
	return "", "", "", false
}

// Keys are the keys that make nriguard attach to a container (a policy,
// or visibility): a container carrying none of them (under any scope) is
// left alone by the OCI path.
var Keys = []string{Egress, Exec, Mode, Profile, Visibility}

// IsPolicyKey tells whether an annotation or label key is one of Keys, in
// any scope (key, key/pod, key/container.<name>).
func IsPolicyKey(k string) bool {
	base, _, _ := strings.Cut(k, "/")
	return slices.Contains(Keys, base)
}

// TolerateMissingPlugins is the pod annotation containerd's NRI validator
// reads (install/containerd/nriguard.toml): a pod carrying it "true" starts
// while nriguard is not connected (nriguard's own pod, for one).
const TolerateMissingPlugins = "tolerate-missing-plugins.nriguard.io"

// ContainerNameAnnotations are where runtimes put a container's name, for
// events and container.<name> keys: containerd's CRI, the kubelet's (and
// CRI-O's), nerdctl's, podman's.
var ContainerNameAnnotations = []string{"io.kubernetes.cri.container-name", "io.kubernetes.container.name", "nerdctl/name", "io.podman.annotations.name"}

// ContainerName finds a container's name among its annotations, or "".
func ContainerName(ann map[string]string) string {
	for _, k := range ContainerNameAnnotations {
		if v := ann[k]; v != "" {
			return v
		}
	}
	return ""
}

// RestrictSockets is the annotation the NRI plugin puts on a container
// under an egress policy when the runtime cannot take a seccomp adjustment
// from it (containerd 1.7, CRI-O): nriguard-runc, as the runtime's binary,
// then restricts the container's sockets itself (and leaves the policy to
// the plugin's hook).
const RestrictSockets = "restrict-sockets.nriguard.io"
