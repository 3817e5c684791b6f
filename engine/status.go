package engine

import (
	"encoding/hex"
	"errors"
	"path/filepath"
	"time"

	"github.com/nriguard/nriguard/bpf"
)

// AttachmentStatus is what the pins say of one attachment: its container,
// who made it, what it holds the container to, since when, and what it
// costs. nriguard status prints it (-o json: docs/install.md, "Watching").
type AttachmentStatus struct {
	ID        string `json:"id"`
	Container string `json:"container,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Owner     string `json:"owner"` // nri, hook, run, unknown
	// PinVersion is the pin version that made it; one other than
	// bpf.PinVersion (OtherVersion) is in force, but this nriguard reads
	// neither its record nor its events.
	PinVersion   uint32   `json:"pin_version"`
	OtherVersion bool     `json:"other_version"`
	Complete     bool     `json:"complete"` // every link and map of its parts pinned
	CgroupID     uint64   `json:"cgroup_id,omitempty"`
	Parts        []string `json:"parts,omitempty"` // egress, exec, dns (its egress rules name DNS names)
	// Digest is what the kernel holds for it (meta's: tables, visibility,
	// cgroup); DecisionDigest its decision as written, the same for every
	// container held to the same rules.
	Digest         string        `json:"digest,omitempty"`
	DecisionDigest string        `json:"decision_digest,omitempty"`
	Mode           string        `json:"mode,omitempty"`    // enforce, audit
	ModeOf         string        `json:"mode_of,omitempty"` // and where it comes from
	Visibility     string        `json:"visibility,omitempty"`
	Layers         []LayerStatus `json:"layers,omitempty"`
	Attached       *time.Time    `json:"attached,omitempty"`
	// Late says why it was attached after its container had run (its
	// seccomp policy could not be restricted): "" if it was not.
	Late   string `json:"late,omitempty"`
	Memory int64  `json:"kernel_memory"`   // bytes: bpf.Memory of its directory
	Error  string `json:"error,omitempty"` // what of it could not be read
}

// LayerStatus is one layer of an attachment's decision.
type LayerStatus struct {
	Kind   string `json:"kind"`            // egress, exec
	Layer  string `json:"layer,omitempty"` // ceiling, profile, label, image, default ("": nriguard run's one policy)
	Source string `json:"source,omitempty"`
	Rules  int    `json:"rules"`
}

// owners name attachments' owners in status.
var owners = map[bpf.Owner]string{bpf.OwnerNRI: "nri", bpf.OwnerHook: "hook", bpf.OwnerRun: "run"}

// Attachments reads every attachment pinned under root. An error says the
// pins cannot be listed; what cannot be read of one attachment is in its
// Error.
func Attachments(root string) ([]AttachmentStatus, error) {
	if root == "" {
		root = bpf.DefaultPinRoot
	}
	ids, err := bpf.List(root)
	if err != nil {
		return nil, err
	}
	out := make([]AttachmentStatus, 0, len(ids))
	for _, id := range ids {
		out = append(out, attachmentStatus(root, id))
	}
	return out, nil
}

func attachmentStatus(root, id string) AttachmentStatus {
	s := AttachmentStatus{ID: id, Owner: "unknown"}
	var problems []error
	info, err := bpf.Inspect(root, id)
	var other *bpf.ErrOtherVersion
	switch {
	case errors.As(err, &other):
		s.OtherVersion = true
	case err != nil:
		problems = append(problems, err)
	}
	s.PinVersion, s.CgroupID, s.Complete = info.Version, info.Cgroup, info.Complete
	if name, ok := owners[info.Owner]; ok {
		s.Owner = name
	}
	if info.Digest != ([32]byte{}) {
		s.Digest = hex.EncodeToString(info.Digest[:6])
	}
	for _, p := range []struct {
		name string
		has  bool
	}{{"egress", info.Egress}, {"exec", info.Exec}, {"dns", info.Names}} {
		if p.has {
			s.Parts = append(s.Parts, p.name)
		}
	}
	var merr error
	if s.Memory, merr = bpf.Memory(filepath.Join(root, id)); merr != nil {
		problems = append(problems, merr)
	}
	if err == nil {
		if err := s.readRecord(root); err != nil {
			problems = append(problems, err)
		}
	}
	if err := errors.Join(problems...); err != nil {
		s.Error = err.Error()
	}
	return s
}

// readRecord fills in what the attachment's pinned record says: its
// container and decision. The decision is parsed, not compiled: status
// needs its layers, not its tables.
func (s *AttachmentStatus) readRecord(root string) error {
	data, err := bpf.ReadRecord(root, s.ID)
	if err != nil || data == nil {
		return err // (none: an attachment made without one)
	}
	rec, err := decodeRecord(data)
	if err != nil {
		return err
	}
	c, d, err := rec.Decision.parse()
	if err != nil {
		return err
	}
	s.Container, s.Pod, s.Namespace = c.Name, c.Pod, c.Namespace
	dg := d.Digest()
	s.DecisionDigest = hex.EncodeToString(dg[:6])
	s.Mode, s.ModeOf, s.Visibility = d.Mode.String(), d.ModeOf, d.Visibility.String()
	for _, l := range d.Layers {
		ls := LayerStatus{Kind: l.Kind, Layer: l.Layer.String(), Source: l.Source}
		switch {
		case l.Egress != nil:
			ls.Rules = len(l.Egress.Rules)
		case l.Exec != nil:
			ls.Rules = len(l.Exec.Rules)
		}
		s.Layers = append(s.Layers, ls)
	}
	if !rec.Attached.IsZero() {
		at := rec.Attached
		s.Attached = &at
	}
	s.Late = rec.Late
	return nil
}
