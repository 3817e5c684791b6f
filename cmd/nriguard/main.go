// Command nriguard holds containers (or a single command) to the network
// destinations their labels declare, with eBPF programs on their cgroups.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cilium/ebpf/rlimit"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/oci"
)

const usage = `usage: nriguard <command> [arguments]

commands:
  run [--egress RULES] [--exec RULES] [--mode enforce|audit] [--user USER] [--visibility V] -- CMD [ARGS...]
        run CMD in a transient cgroup held to the rules; print events, and
        what it reaches and runs, as JSON lines on stderr; exit with CMD's status
  plugin [--socket S] [--config F] [--log F] [--observe-socket S] [--metrics-addr ADDR]
        the NRI plugin for containerd and CRI-O: external (connects to S), or
        pre-registered (started by the runtime from its plugin_path)
  hook createRuntime|prestart|poststop
        the OCI hook (podman hooks.d, CRI-O): the container's state on stdin
  events
        print, as JSON lines, the events of attachments made by the OCI hook
        (or by the plugin while it is not running)
  observe [--namespace N] [--pod P] [--container C] [--verdict V] [--kind K] [-o json|table]
        follow the plugin's record stream (or, with no plugin, the pinned ring)
  profile --pod P [--namespace N] [--container C] (--for 10m | --since 1h) [-o yaml|flags|json]
        the annotations that hold a workload to what it did (docs/profile.md)
  status [--pin-root R] [--socket S] [-o text|json]
        what nriguard does on this node: the kernel's features and the
        guarantees they give, every attachment (late ones, another pin
        version's), what they share, and the plugin (or that it is down)
  list  list the attachments pinned under /sys/fs/bpf/nriguard
  detach ID...
        remove attachments (what a container left behind, say)
  seccomp [--from PROFILE]
        print a seccomp profile that keeps sockets to the families nriguard
        judges (PROFILE restricted): for podman's --security-opt seccomp=
  version
        the version, and how this kernel lets exec rules be enforced

installed as nriguard-runc (a link), it is a runc wrapper that adds the hook
to containers carrying nriguard annotations: for nerdctl and ctr, which have
no hooks.d (nerdctl run --runtime /usr/local/bin/nriguard-runc ...)
`

func main() {
	if filepath.Base(os.Args[0]) == oci.RuncWrapperName {
		os.Exit(oci.Runc(os.Args[1:]))
	}
	if len(os.Args) > 1 && os.Args[1] == childCommand {
		// The helper changes this thread's capabilities and then execs on
		// it: keep it the only thread that runs this goroutine.
		runtime.LockOSThread()
		os.Exit(runChild(os.Args[2:]))
	}
	// Before 5.11 the kernel charges BPF maps to RLIMIT_MEMLOCK (64 KiB by
	// default): lift it there (nothing to do on newer kernels).
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Fprintln(os.Stderr, "nriguard: raising RLIMIT_MEMLOCK for BPF maps:", err)
	}
	if len(os.Args) < 2 && os.Getenv("NRI_PLUGIN_SOCKET") != "" {
		// Started by the runtime from its plugin_path (/opt/nri/plugins/
		// 10-nriguard), with no arguments: run as a pre-registered plugin.
		os.Exit(runPlugin(nil))
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		code = run(args)
	case "plugin":
		code = runPlugin(args)
	case "hook":
		code = runHook(args)
	case "events":
		code = runEvents(args)
	case "observe":
		code = runObserve(args)
	case "profile":
		code = runProfile(args)
	case "status":
		code = runStatus(args)
	case "list":
		code = list(args)
	case "detach":
		code = detach(args)
	case "seccomp":
		code = runSeccomp(args)
	case "version":
		code = printVersion()
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "nriguard: unknown command %q\n%s", cmd, usage)
		code = 2
	}
	os.Exit(code)
}

var version = "dev"

func printVersion() int {
	fmt.Println("nriguard", version)
	be, err := bpf.ExecBackend()
	switch {
	case err != nil:
		fmt.Println("exec backend: none:", err)
		return 1
	case be == bpf.BackendLSM:
		fmt.Println("exec backend: lsm (lsm/bprm_check_security: a denied exec fails with EPERM)")
	default:
		why := "BPF LSM unavailable"
		if err := bpf.ProbeExecBackend(bpf.BackendLSM); err != nil {
			why += ": " + err.Error()
		}
		fmt.Printf("exec backend: sigkill (tp_btf/sched_process_exec: a denied program is killed before its first instruction; %s)\n", why)
	}
	return 0
}
