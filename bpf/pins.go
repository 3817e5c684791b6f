package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultPinRoot is where attachments are pinned unless told otherwise.
const DefaultPinRoot = "/sys/fs/bpf/nriguard"

// PinVersion is the version of the pin layout: of every map and directory
// below and of what the programs write to the rings. It changes whenever
// one of them does. An attachment's meta carries it, and what attachments
// share is pinned under names that end in it, so that a nriguard of
// another version never reads pins it would misread: it leaves them in
// force and says so (ErrOtherVersion). Version 1 was unversioned.
const PinVersion = 2

// The pin layout under a pin root, in one place:
//
//	<id>/                        one attachment (a container's, run-<pid>)
//	    meta                     its pin version, what it enforces (digest), where, its parts, its owner
//	    record                   what the attacher pinned with it (engine: the decision and the
//	                             identities resolved at its first attach), in chunks
//	    link_<hook>              the links of its egress programs (egressLinks) to its cgroup
//	    map_v4_runs, ...         its egress tables (tablePins), in a slot of a copy's table maps
//	    egress/                  the copy of the egress programs of an attachment with its own ring
//	                             (prog_<hook>, map_config, map_*_tables, map_sock_verdicts, map_epoch, map_last_flows, map_slots,
//	                             map_events and map_lost_events: its ring)
//	    map_exec_rules           its record of its exec rules
//	_events-v2/ring, .../lost    the event ring shared by a daemon's and the hooks' attachments
//	_exec-v2/link_exec, map_exec_*  the host-wide exec program and its maps (execPins)
//	_egress-v2/r<ring>-<caps>[-names]-<n>/  a copy of the egress programs shared by the attachments that report
//	                             to that ring and whose tables fit caps (as egress/, 1,024 slots;
//	                             n counts the copies of a class)
//	tmp-<pid>-<random>-<name>/   an attach under way; List removes those of dead processes
const (
	pinMeta       = "meta"
	pinRecord     = "record"
	pinExecRecord = "map_exec_rules"
	dirPrivateSet = "egress"
	pinPrincipals = "map_principals" // an attachment's principal table, if its policy has qualifiers

	pinRing = "ring"
	pinLost = "lost"

	pinExecLink = "link_exec"
)

// What attachments share, under names of this pin version.
var (
	dirEgress = sharedName("_egress")
	dirEvents = sharedName("_events")
	dirExec   = sharedName("_exec")
)

func sharedName(base string) string { return fmt.Sprintf("%s-v%d", base, PinVersion) }

// ExecDir is where the host-wide exec program is pinned under root.
func ExecDir(root string) string { return filepath.Join(pinRootOr(root), dirExec) }

// tablePins name an attachment's egress tables: IPv4 runs, IPv6 runs,
// port runs.
var tablePins = [3]string{"map_v4_runs", "map_v6_runs", "map_port_runs"}

// execPins are the maps of the host-wide exec set, under _exec/: the rule
// table, the rings, their lost counters, and the ring registry.
var execPins = []string{"map_exec_rules", "map_exec_rings", "map_exec_losts", "map_exec_ring_users"}

// validID is what an attachment's directory may be called: bpffs refuses
// dots, and "_" names are nriguard's own (shared: _egress-vN, _events-vN,
// _exec-vN; version 1's were _egress, _events, _exec).
var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

func checkID(id string) error {
	if !validID.MatchString(id) || strings.HasPrefix(id, "tmp-") || strings.HasPrefix(id, "_") {
		return fmt.Errorf("invalid id %q: expected 1-200 letters, digits, '_' or '-', not starting with _ or tmp-", id)
	}
	return nil
}

func pinRootOr(root string) string {
	if root == "" {
		return DefaultPinRoot
	}
	return root
}

// tmpDir names a directory for an attach under way in this process.
func tmpDir(root, name string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return filepath.Join(root, fmt.Sprintf("tmp-%d-%s-%s", os.Getpid(), hex.EncodeToString(b), name))
}

// ensurePinRoot makes the pin root, first mounting bpffs on /sys/fs/bpf if
// the root is below it and nothing is mounted there.
func ensurePinRoot(root string) error {
	var st unix.Statfs_t
	if strings.HasPrefix(root, "/sys/fs/bpf/") && unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on /sys/fs/bpf: %w", err)
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("pin root %s: %w (is bpffs mounted there?)", root, err)
	}
	return nil
}

// List returns the ids pinned under root. It also removes what attaches
// that died half-way left behind (tmp-<pid>-... of processes that are gone).
func List(root string) ([]string, error) {
	root = pinRootOr(root)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if rest, isTmp := strings.CutPrefix(name, "tmp-"); isTmp {
			pid, _, _ := strings.Cut(rest, "-")
			if n, err := strconv.Atoi(pid); err == nil && unix.Kill(n, 0) == unix.ESRCH {
				os.RemoveAll(filepath.Join(root, name))
			}
			continue
		}
		if e.IsDir() && checkID(name) == nil {
			ids = append(ids, name)
		}
	}
	return ids, nil
}

// EgressDir is where the shared copies of the egress programs are pinned
// under root.
func EgressDir(root string) string { return filepath.Join(pinRootOr(root), dirEgress) }

// EventsDir is where the shared event ring is pinned under root.
func EventsDir(root string) string { return filepath.Join(pinRootOr(root), dirEvents) }
