package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// PinInfo is what an attachment's meta says of it, for those who report
// on the pins (nriguard status).
type PinInfo struct {
	ID      string
	Version uint32   // its pin version: PinVersion, or another's
	Digest  [32]byte // of what it enforces, where (zero if another version's meta does not say)
	Owner   Owner
	Cgroup  uint64 // the policed cgroup's id (0 if another version's meta does not say)
	Egress  bool   // its parts
	Exec    bool
	Names   bool // its egress policy names DNS names
	// Complete: every link and map of its parts is pinned.
	Complete bool
}

// Inspect reads id's meta. An attachment of another pin version is
// returned with what can be read of it and its ErrOtherVersion.
func Inspect(root, id string) (PinInfo, error) {
	dir := filepath.Join(pinRootOr(root), id)
	m, err := readMeta(dir)
	var other *ErrOtherVersion
	if errors.As(err, &other) {
		return PinInfo{ID: id, Version: other.Version, Owner: other.Owner, Cgroup: other.Cgroup}, err
	} else if err != nil {
		return PinInfo{ID: id}, err
	}
	return PinInfo{ID: id, Version: m.Version, Digest: m.Digest, Owner: m.Owner, Cgroup: m.Cgroup,
		Egress: m.Parts&partEgress != 0, Exec: m.Parts&partExec != 0, Names: m.Parts&partNames != 0,
		Complete: complete(dir, m.Parts)}, nil
}

// SharedPin is one directory of what attachments share under a pin root.
type SharedPin struct {
	Name    string `json:"name"`             // its directory: _egress-v2, _exec-v2, _events-v2, or another version's
	What    string `json:"what"`             // in words
	Version uint32 `json:"pin_version"`      // the pin version it belongs to
	Copies  int    `json:"copies,omitempty"` // for _egress: how many copies of the egress programs
	Memory  int64  `json:"kernel_memory"`    // bytes the kernel charges for it (for _egress, the tables idle slots keep included)
}

// sharedWhat says what each kind of shared directory holds.
var sharedWhat = map[string]string{
	"_egress": "copies of the egress programs, with the tables of their slots",
	"_exec":   "the host-wide exec program and its rule table",
	"_events": "the event ring and its lost counters",
}

// SharedPins lists what attachments share under root, this pin version's
// and others' (which go with their version's last attachment).
func SharedPins(root string) ([]SharedPin, error) {
	root = pinRootOr(root)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []SharedPin
	for _, e := range entries {
		version, ok := sharedVersion(e.Name())
		if !ok {
			continue
		}
		base, _, _ := strings.Cut(e.Name(), "-")
		p := SharedPin{Name: e.Name(), What: sharedWhat[base], Version: version}
		dir := filepath.Join(root, e.Name())
		if p.Memory, err = sharedMemory(dir, base == "_egress"); err != nil {
			return nil, err
		}
		if base == "_egress" {
			copies, _ := os.ReadDir(dir)
			p.Copies = len(copies)
		}
		out = append(out, p)
	}
	return out, nil
}
