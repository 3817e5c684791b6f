package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
)

// Digest identifies what the tables enforce: two tables with the same
// digest answer every flow alike. An attachment whose pinned digest equals
// a new policy's is left as it is, so every field must count here
// (TestDigestCoversEveryField changes each one in turn).
func (c *Compiled) Digest() [32]byte {
	d := digester{sha256.New()}
	d.str("egress")
	d.int(uint64(len(c.V4)))
	for _, r := range c.V4 {
		d.int(uint64(r.Start), uint64(r.Class))
	}
	d.int(uint64(len(c.V6)))
	for _, r := range c.V6 {
		d.int(r.Hi, r.Lo, uint64(r.Class))
	}
	d.int(uint64(len(c.Ports)))
	for _, r := range c.Ports {
		d.int(uint64(r.Class), uint64(r.Proto), uint64(r.Port), uint64(boolInt(r.Nameable)))
		d.verdict(r.Verdict)
	}
	d.int(uint64(len(c.Names)))
	for _, n := range c.Names {
		d.str(n.Pattern)
		d.int(uint64(n.Class))
	}
	d.int(uint64(len(c.Resolvers)))
	for _, a := range c.Resolvers {
		d.str(a.String())
	}
	d.int(uint64(c.Classes))
	d.verdict(c.Sockets)
	for _, runs := range [][]IDRun{c.UIDRuns, c.GIDRuns} {
		d.int(uint64(len(runs)))
		for _, r := range runs {
			d.int(uint64(r.Start))
		}
	}
	d.int(uint64(c.Programs), uint64(len(c.Overrides)))
	for _, o := range c.Overrides {
		d.int(uint64(o.Class), uint64(o.Program), uint64(o.UID), uint64(o.GID), uint64(o.Effective))
	}
	ids := sortedIDs(c.ProgramFiles)
	d.int(uint64(len(ids)))
	for _, id := range ids {
		f := c.ProgramFiles[id]
		d.int(uint64(id.Dev), id.Ino, uint64(f.Stamp.Sec), uint64(f.Stamp.Nsec), uint64(f.Class))
	}
	return d.sum()
}

// Digest identifies what an exec table enforces, like Compiled.Digest.
func (t *ExecTable) Digest() [32]byte {
	d := digester{sha256.New()}
	d.str("exec")
	d.verdict(t.Default)
	ids := sortedIDs(t.Files)
	d.int(uint64(len(ids)))
	for _, id := range ids {
		d.int(uint64(id.Dev), id.Ino)
		d.verdict(t.Files[id])
	}
	ids = sortedIDs(t.Stamps)
	d.int(uint64(len(ids)))
	for _, id := range ids {
		st := t.Stamps[id]
		d.int(uint64(id.Dev), id.Ino, uint64(st.Sec), uint64(st.Nsec))
	}
	ids = sortedIDs(t.Conds)
	d.int(uint64(len(ids)))
	for _, id := range ids {
		d.int(uint64(id.Dev), id.Ino, uint64(len(t.Conds[id])))
		for _, c := range t.Conds[id] {
			d.int(uint64(c.UIDs.Lo), uint64(c.UIDs.Hi), uint64(c.GIDs.Lo), uint64(c.GIDs.Hi), uint64(c.Rule))
			d.verdict(c.Verdict)
		}
	}
	// (the rules' positions only name them in events; counted all the same,
	// so that the digest stands for everything the table holds)
	ids = sortedIDs(t.Rules)
	d.int(uint64(len(ids)))
	for _, id := range ids {
		d.int(uint64(id.Dev), id.Ino, uint64(t.Rules[id]))
	}
	return d.sum()
}

func sortedIDs[V any](m map[FileID]V) []FileID {
	ids := make([]FileID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b FileID) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Ino, b.Ino))
	})
	return ids
}

type digester struct{ h hash.Hash }

func (d digester) int(vs ...uint64) {
	var b [8]byte
	for _, v := range vs {
		binary.LittleEndian.PutUint64(b[:], v)
		d.h.Write(b[:])
	}
}

func (d digester) str(s string) {
	d.int(uint64(len(s)))
	d.h.Write([]byte(s))
}

func (d digester) verdict(v Verdict) { d.int(uint64(v.Action), uint64(v.Layer)) }

func (d digester) sum() [32]byte {
	var out [32]byte
	copy(out[:], d.h.Sum(nil))
	return out
}
