package engine

import (
	"sync"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
)

// A Namer fills in a record's container (id, name, pod, namespace) and the
// rule that decided, from the policed cgroup the record names. There are
// three: the Engine (the containers a daemon attached or adopted), a
// PinnedNamer (what is pinned: nriguard events, observe and profile
// without a daemon), and one container's Info (nriguard run).
type Namer interface {
	NameRecord(r *events.Record)
}

// Info names a container in events and logs.
type Info struct {
	ID, Name, Pod, Namespace string
	rules                    *Ruler // names the rules that decide its events
}

// NameRecord fills in r as this container's: an Info is the Namer of a
// single container.
func (i Info) NameRecord(r *events.Record) {
	r.ContainerID, r.Container, r.Pod, r.Namespace = i.ID, i.Name, i.Pod, i.Namespace
	i.rules.Rule(r)
}

// PinnedNamer names records from what is pinned under a pin root: each
// attachment's record (its container and rules), or, for one without, its
// id. It looks the pins up again when it meets a cgroup it does not know.
type PinnedNamer struct {
	root string
	mu   sync.Mutex
	byCg map[uint64]Info
}

// NewPinnedNamer names records from the pins under root.
func NewPinnedNamer(root string) *PinnedNamer { return &PinnedNamer{root: root} }

// Forget drops what it has read of the pins (ids may name other cgroups
// now).
func (n *PinnedNamer) Forget() {
	n.mu.Lock()
	n.byCg = nil
	n.mu.Unlock()
}

// NameRecord fills in r's container from the pins.
func (n *PinnedNamer) NameRecord(r *events.Record) {
	if r.PolicyCgroup == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	info, ok := n.byCg[r.PolicyCgroup]
	if !ok {
		n.read()
		info = n.byCg[r.PolicyCgroup]
	}
	if info.ID != "" {
		info.NameRecord(r)
	}
}

// read reads every attachment's record.
func (n *PinnedNamer) read() {
	n.byCg = map[uint64]Info{}
	for cgid, id := range bpf.CgroupOwners(n.root) {
		info := Info{ID: id}
		if data, err := bpf.ReadRecord(n.root, id); err == nil && data != nil {
			if p, err := planFromRecord(data); err == nil {
				info = p.Info()
			}
		}
		n.byCg[cgid] = info
	}
}
