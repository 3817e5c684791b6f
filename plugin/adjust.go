package plugin

import (
	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nriguard/nriguard/seccomp"
)

// toOCI turns NRI's form of a policy into the OCI spec's.
func toOCI(p *api.LinuxSeccomp) *rspec.LinuxSeccomp {
	if p == nil {
		return nil
	}
	o := &rspec.LinuxSeccomp{
		DefaultAction:    rspec.LinuxSeccompAction(p.DefaultAction),
		ListenerPath:     p.ListenerPath,
		ListenerMetadata: p.ListenerMetadata,
		Syscalls:         api.ToOCILinuxSyscalls(p.Syscalls),
	}
	if p.DefaultErrno != nil {
		v := uint(p.DefaultErrno.Value)
		o.DefaultErrnoRet = &v
	}
	for _, a := range p.Architectures {
		o.Architectures = append(o.Architectures, rspec.Arch(a))
	}
	for _, f := range p.Flags {
		o.Flags = append(o.Flags, rspec.LinuxSeccompFlag(f))
	}
	return o
}

// socketAdjustment is what CreateContainer asks of the runtime for a
// container under an egress policy: its seccomp policy, restricted to the
// sockets the hooks can judge (seccomp.Restrict).
func socketAdjustment(c *api.Container) *api.ContainerAdjustment {
	adj := &api.ContainerAdjustment{}
	adj.SetLinuxSeccompPolicy(api.FromOCILinuxSeccomp(seccomp.Restrict(toOCI(c.GetLinux().GetSeccompPolicy()))))
	return adj
}
