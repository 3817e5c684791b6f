package engine

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
)

// sleeper is a process in a new cgroup: a running container's init.
func sleeper(t *testing.T) (cg string, pid uint32) {
	t.Helper()
	cg = testenv.Cgroup(t)
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cg, uint32(cmd.Process.Pid)
}

func policyRecord(recs []events.Record, id, reason string) bool {
	for _, r := range recs {
		if r.Kind == events.KindPolicy && r.ContainerID == id && r.Reason == reason && r.Message != "" {
			return true
		}
	}
	return false
}

// Reconcile never detaches a container the runtime still knows, whether or
// not its labels can be read; says so when it cannot decide one that has
// no attachment; attaches late, and says so, one that started without it;
// and keeps, and says so, a policy whose decision has changed since.
func TestReconcileFailsClosedAndSays(t *testing.T) {
	eng := daemon(t)
	out := report(t, eng)
	ann := map[string]string{"egress.nriguard.io": "allow tcp 10.1.2.3:8080"}
	cg, pid := sleeper(t)
	attached := Container{ID: "c-attached", Name: "web", Pod: "shop", Namespace: "prod", PodAnnotations: ann}
	d, err := eng.Decide(attached)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Attach(attached, d, cg, "/"); err != nil {
		t.Fatal(err)
	}
	_, pid2 := sleeper(t)
	late := Container{ID: "c-late", Name: "late", Pod: "shop", Namespace: "prod", PodAnnotations: ann}
	_, pid3 := sleeper(t)
	unknown := Container{ID: "c-unknown", Name: "unknown", Pod: "shop", Namespace: "prod", PodAnnotations: ann}
	imageGone := errors.New("image not found")

	// the image of the attached container is gone: it stays attached
	r, err := eng.Reconcile([]Known{
		{Container: attached, Pid: pid, Running: true, LabelsErr: imageGone},
		{Container: late, Pid: pid2, Running: true},
		{Container: unknown, Pid: pid3, Running: true, LabelsErr: imageGone},
	})
	if err != nil || len(r.Removed) != 0 || fmt.Sprint(r.Adopted, r.Attached) != "[c-attached] [c-late]" {
		t.Fatalf("reconcile: %+v, %v; want c-attached adopted, c-late attached, nothing removed", r, err)
	}
	if _, err := bpf.Pinned(eng.PinRoot(), attached.ID); err != nil {
		t.Errorf("a running container whose labels cannot be read lost its attachment: %v", err)
	}
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", "tcp:10.1.2.3:8081"); got[0] != "EPERM" {
		t.Errorf("after reconcile, the attached container: %v, want EPERM", got)
	}
	if _, err := bpf.Pinned(eng.PinRoot(), late.ID); err != nil {
		t.Errorf("a running container without its policy was not attached late: %v", err)
	}
	if _, err := bpf.Pinned(eng.PinRoot(), unknown.ID); err == nil {
		t.Error("a container whose labels cannot be read was attached")
	}
	until(t, out, func(recs []events.Record) bool {
		return policyRecord(recs, late.ID, events.ReasonLate) && policyRecord(recs, unknown.ID, events.ReasonUndecided)
	})

	// the node's settings change: the pinned policy stays, and that is said
	eng.SetConfig(mustConfig(t, "ceiling_egress: deny any 10.1.9.9"))
	if _, err := eng.Reconcile([]Known{{Container: attached, Pid: pid, Running: true}, {Container: late, Pid: pid2, Running: true}}); err != nil {
		t.Fatal(err)
	}
	until(t, out, func(recs []events.Record) bool { return policyRecord(recs, attached.ID, events.ReasonKept) })

	// the runtime no longer knows it: detached
	r, err = eng.Reconcile(nil)
	if err != nil || fmt.Sprint(r.Removed) != "[c-attached c-late]" {
		t.Errorf("reconcile of nothing: removed %v, %v; want both attachments", r.Removed, err)
	}
}
