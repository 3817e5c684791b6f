package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/seccomp"
)

const childCommand = "__run-child"

// run: nriguard run [--egress RULES | --egress-file F] [--exec RULES |
// --exec-file F] [--mode M] [--user U] -- CMD ARGS...
func run(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	egress := fs.String("egress", "", "egress rules, as in the egress.nriguard.io label")
	execRules := fs.String("exec", "", "exec rules, as in the exec.nriguard.io label")
	egressFile := fs.String("egress-file", "", "a file of egress rules, one a line ('-': standard input); for policies too large for an argument")
	execFile := fs.String("exec-file", "", "a file of exec rules, one a line ('-': standard input)")
	mode := fs.String("mode", "enforce", "enforce, or audit (report but let through)")
	userSpec := fs.String("user", "", "run CMD as this user: a name, UID or UID:GID")
	visText := fs.String("visibility", "both", "what to print besides refusals: both (every new flow and its counts, every exec), flows, execs, or off")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	vis, err := policy.ParseVisibility("--visibility", *visText)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 2
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(os.Stderr, "nriguard run: expected a command after the options (nriguard run --egress RULES -- CMD ARGS...)")
		return 2
	}
	if *egressFile == "-" && *execFile == "-" {
		fmt.Fprintln(os.Stderr, "nriguard run: --egress-file and --exec-file cannot both read standard input")
		return 2
	}
	egressKey, execKey := "--egress", "--exec"
	for _, f := range []struct {
		flag, file string
		rules, key *string
	}{{"--egress", *egressFile, egress, &egressKey}, {"--exec", *execFile, execRules, &execKey}} {
		if f.file == "" {
			continue
		}
		if *f.rules != "" {
			fmt.Fprintf(os.Stderr, "nriguard run: %s and %s-file both given: give one\n", f.flag, f.flag)
			return 2
		}
		text, err := policy.ReadRules(f.file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nriguard run: %s-file: %v\n", f.flag, err)
			return 2
		}
		if strings.TrimSpace(text) == "" {
			fmt.Fprintf(os.Stderr, "nriguard run: %s-file %s: no rules\n", f.flag, f.file)
			return 2
		}
		*f.rules, *f.key = text, f.file
	}
	if *egress == "" && *execRules == "" {
		fmt.Fprintln(os.Stderr, "nriguard run: expected --egress RULES (or --egress-file F), --exec RULES (or --exec-file F), or both")
		return 2
	}
	m, err := policy.ParseMode("--mode", *mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 2
	}
	// One decision, made and attached as every path does (engine.Plan); the
	// command sees the host's filesystem, so its rules' files are resolved
	// against "/".
	d := &engine.Decision{Mode: m, ModeOf: m.String(), Visibility: vis}
	if *egress != "" {
		l := engine.Layer{Kind: "egress", Source: egressKey, Key: egressKey, Text: *egress}
		if egressKey == "--egress" {
			l.Egress, err = policy.ParseEgress(egressKey, *egress)
		} else {
			l.Egress, err = policy.ParseEgressFile(egressKey, *egress)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nriguard run:", err)
			return 2
		}
		d.Layers = append(d.Layers, l)
	} else {
		d.Visibility &^= policy.VisFlows // no egress programs for an exec policy alone
	}
	if *execRules != "" {
		l := engine.Layer{Kind: "exec", Source: execKey, Key: execKey, Text: *execRules}
		if execKey == "--exec" {
			l.Exec, err = policy.ParseExec(execKey, *execRules)
		} else {
			l.Exec, err = policy.ParseExecFile(execKey, *execRules)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nriguard run:", err)
			return 2
		}
		d.Layers = append(d.Layers, l)
	}
	id := fmt.Sprintf("run-%d", os.Getpid())
	plan, err := engine.NewPlan(engine.Container{ID: id}, d, "/", "")
	if plan != nil {
		for _, w := range plan.Warnings {
			fmt.Fprintln(os.Stderr, "nriguard run: warning:", w)
		}
	}
	if err == nil {
		// the command sees the host: an overlay's layers too
		be, _ := bpf.ExecBackend()
		err = plan.CheckBinding(be == bpf.BackendLSM, true)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 2
	}
	var cred *syscall.Credential
	if *userSpec != "" {
		if cred, err = lookupUser(*userSpec); err != nil {
			fmt.Fprintln(os.Stderr, "nriguard run: --user:", err)
			return 2
		}
	}
	// A reader of stderr that goes away (nriguard run ... 2>&1 | head) must
	// not kill nriguard before it has cleaned up: writes then fail with
	// EPIPE instead. (Handled, not ignored: the command gets the default
	// back at exec.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	r, err := startRun(plan)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 1
	}
	code := r.exec(cmdArgs, cred, len(d.Egress()) > 0)
	if err := r.close(); err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// runState is one nriguard run: its cgroup, attachment and event printer.
type runState struct {
	id, cg string
	att    *bpf.Attachment
	events *bpf.EventReader
	done   sync.WaitGroup
	out    io.Writer
	buf    []byte
	namer  engine.Info // its own events: the command's
}

func startRun(plan *engine.Plan) (*runState, error) {
	root, err := cgroup.Root()
	if err != nil {
		return nil, err
	}
	r := &runState{id: plan.Container.ID, out: os.Stderr, namer: plan.Info()}
	r.cg = filepath.Join(root, "nriguard", r.id)
	if err := os.MkdirAll(r.cg, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup: %w", err)
	}
	spec, err := plan.Spec(r.cg, bpf.OwnerRun)
	if err == nil {
		r.att, err = bpf.Attach(spec, nil) // with a ring of its own
	}
	if err != nil {
		cgroup.Remove(r.cg)
		return nil, err
	}
	if r.events, err = bpf.NewEventReader(r.att.Events); err != nil {
		r.close()
		return nil, err
	}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		var rec events.Record
		// Until close asks it to stop with a deadline: Read returns
		// ErrDeadlineExceeded only when the ring is empty.
		for r.events.Read(&rec) == nil {
			r.print(&rec)
		}
	}()
	return r, nil
}

func (r *runState) print(rec *events.Record) {
	r.namer.NameRecord(rec)
	r.buf = rec.AppendJSON(r.buf[:0])
	r.out.Write(r.buf)
}

// exec runs the command through the helper, which enters the cgroup, drops
// CAP_NET_RAW, restricts the sockets it may make (under an egress policy)
// and the user's privileges, and then execs the command: the command's first
// instruction runs under the policy.
func (r *runState) exec(args []string, cred *syscall.Credential, egress bool) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 1
	}
	childArgs := []string{childCommand, r.cg, "-", "-"}
	if cred != nil {
		childArgs[2] = fmt.Sprintf("%d:%d", cred.Uid, cred.Gid)
	}
	if egress {
		childArgs[3] = "sockets"
	}
	cmd := exec.Command(self, append(childArgs, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "nriguard run:", err)
	return 1
}

// close ends whatever the command left running, prints what is left of the
// events (the leftovers' refusals too), and removes the attachment and the
// cgroup.
func (r *runState) close() error {
	var errs []error
	// Killed first (the cgroup is removed once it is empty): a process that
	// is gone makes no refusal after the ring has been read.
	if err := cgroup.Remove(r.cg); err != nil {
		errs = append(errs, err)
	}
	os.Remove(filepath.Dir(r.cg)) // the shared parent, when no other run uses it
	if r.events != nil {
		// Events are written before the syscall that caused them returns, so
		// by now every one is in the buffer or counted lost: stop the
		// printer, print the rest and the losses, and only then let go of
		// the ring (closing it unmaps what it still holds).
		r.events.SetDeadline(time.Now())
		r.done.Wait()
		for _, rec := range r.events.Drain() {
			r.print(&rec)
		}
		r.events.Close()
	}
	if r.att != nil {
		if err := r.att.Detach(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runChild is the helper: __run-child CGROUP UID:GID|- sockets|- CMD ARGS...
func runChild(args []string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "nriguard run:", err)
		return 126
	}
	if len(args) < 4 {
		return fail(errors.New("helper: bad arguments"))
	}
	cg, ids, sockets, cmd := args[0], args[1], args[2], args[3:]
	if err := cgroup.Move(cg, 0); err != nil {
		return fail(fmt.Errorf("enter cgroup: %w", err))
	}
	// AF_PACKET sockets never reach the cgroup hooks; without CAP_NET_RAW
	// they cannot be made. Dropped from the bounding set, it cannot come
	// back through exec, setuid binaries or file capabilities.
	if err := unix.Prctl(unix.PR_CAPBSET_DROP, unix.CAP_NET_RAW, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("drop CAP_NET_RAW: %w", err))
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		return fail(err)
	}
	// Under an egress policy only the sockets the hooks judge (and unix and
	// netlink ones) may be made, by any call (seccomp.Filter). Installed
	// while this thread still has CAP_SYS_ADMIN, and kept through exec.
	if sockets == "sockets" {
		if err := seccomp.Install(); err != nil {
			return fail(err)
		}
	}
	if ids != "-" {
		uidText, gidText, _ := strings.Cut(ids, ":")
		uid, _ := strconv.Atoi(uidText)
		gid, _ := strconv.Atoi(gidText)
		if err := syscall.Setgroups(nil); err != nil {
			return fail(err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fail(err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return fail(err)
		}
	}
	return fail(syscall.Exec(path, cmd, os.Environ()))
}

// lookupUser accepts a user name, a UID (its group is the user's, or the
// same number) or UID:GID.
func lookupUser(s string) (*syscall.Credential, error) {
	uidText, gidText, hasGid := strings.Cut(s, ":")
	var uid, gid uint64
	var err error
	if uid, err = strconv.ParseUint(uidText, 10, 32); err != nil {
		u, lerr := user.Lookup(uidText)
		if lerr != nil {
			return nil, fmt.Errorf("no user %q: expected a user name, UID or UID:GID", uidText)
		}
		uid, _ = strconv.ParseUint(u.Uid, 10, 32)
		gid, _ = strconv.ParseUint(u.Gid, 10, 32)
	} else if u, lerr := user.LookupId(uidText); lerr == nil {
		gid, _ = strconv.ParseUint(u.Gid, 10, 32)
	} else {
		gid = uid
	}
	if hasGid {
		if gid, err = strconv.ParseUint(gidText, 10, 32); err != nil {
			return nil, fmt.Errorf("invalid group %q: expected a number", gidText)
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func list(args []string) int {
	root := bpf.DefaultPinRoot
	ids, err := bpf.List(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard list:", err)
		return 1
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tMADE BY\tKERNEL MEMORY")
	for _, id := range ids {
		mem, err := bpf.Memory(filepath.Join(root, id))
		m := fmt.Sprintf("%d KiB", mem/1024)
		if err != nil {
			m = "? (" + err.Error() + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", id, bpf.OwnerOf(root, id), m)
	}
	w.Flush()
	if shared, err := bpf.SharedMemory(root); err == nil && shared > 0 {
		fmt.Printf("shared by them (egress programs and idle tables, exec program, event ring): %d KiB\n", shared/1024)
	}
	return 0
}

func detach(args []string) int {
	code := 0
	for _, id := range args {
		if err := bpf.Detach("", id); err != nil {
			fmt.Fprintln(os.Stderr, "nriguard detach:", err)
			code = 1
		}
	}
	return code
}
