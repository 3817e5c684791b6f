package engine

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nriguard/nriguard/policy"
)

// decisionText is a decision as text (the rules as written), with its
// container: what the plugin hands to its OCI hook and what is pinned with
// an attachment. Whoever reads it parses the rules again: the parse is the
// contract.
type decisionText struct {
	ID, Name, Pod, Namespace string
	Mode                     policy.Mode
	ModeOf                   string
	Visibility               policy.Visibility
	Layers                   []textLayer
}

type textLayer struct {
	Kind   string
	Layer  policy.Layer
	Source string
	Key    string
	Text   string
}

func textOf(c Container, d *Decision) decisionText {
	t := decisionText{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace, Mode: d.Mode, ModeOf: d.ModeOf, Visibility: d.Visibility}
	for _, l := range d.Layers {
		t.Layers = append(t.Layers, textLayer{l.Kind, l.Layer, l.Source, l.Key, l.Text})
	}
	return t
}

// parse is the container and the decision again.
func (t decisionText) parse() (Container, *Decision, error) {
	d := &Decision{Mode: t.Mode, ModeOf: t.ModeOf, Visibility: t.Visibility}
	for _, tl := range t.Layers {
		l := Layer{Kind: tl.Kind, Layer: tl.Layer, Source: tl.Source, Key: tl.Key, Text: tl.Text}
		k, ok := kindNamed(tl.Kind)
		if !ok {
			return Container{}, nil, fmt.Errorf("the decision for container %s: unknown kind %q", t.ID, tl.Kind)
		}
		if err := k.parse(tl.Key, tl.Text, &l); err != nil {
			return Container{}, nil, err
		}
		d.Layers = append(d.Layers, l)
	}
	return Container{ID: t.ID, Name: t.Name, Pod: t.Pod, Namespace: t.Namespace}, d, nil
}

// Digest identifies what a decision holds a container to (its layers'
// rules, the mode, visibility), whatever the container: two decisions with
// the same digest attach the same policy to the same files.
func (d *Decision) Digest() [32]byte {
	t := textOf(Container{}, d)
	t.ModeOf = ""
	data, _ := json.Marshal(t)
	return sha256.Sum256(data)
}

func kindNamed(name string) (kind, bool) {
	for _, k := range kinds {
		if k.name == name {
			return k, true
		}
	}
	return kind{}, false
}

// record is what an attachment was made from, pinned with it (bpf.Spec's
// Record): the decision, and the identities of the files its rules name as
// they were resolved at the container's first attach. Whoever adopts the
// attachment later (a restarted plugin, another version of the DaemonSet)
// takes them from here and never resolves inside the container again: a
// file the container changed since stays what it was judged as then.
type record struct {
	V        int // recordVersion
	Decision decisionText
	Programs map[policy.FileID]resolvedProgram // exe= rules' files
	Exec     []*policy.ExecTable               // each exec layer's, in the decision's order
	// Late says why the attachment was made after the container had run,
	// if it was (its seccomp policy could not be restricted then).
	Late     string
	Attached time.Time
}

// resolvedProgram is a file exe= patterns name, as resolved.
type resolvedProgram struct {
	Stamp    policy.Stamp
	Patterns []string
	Weak     policy.Weakness // Why "" if none
}

const recordVersion = 1

// encode is the record as pinned: gob (maps keyed by file), gzipped.
func (r *record) encode() ([]byte, error) {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if err := gob.NewEncoder(z).Encode(r); err != nil {
		return nil, err
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func decodeRecord(data []byte) (*record, error) {
	z, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	var r record
	if err := gob.NewDecoder(io.LimitReader(z, 1<<30)).Decode(&r); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if r.V != recordVersion {
		return nil, fmt.Errorf("record of version %d, this nriguard reads %d", r.V, recordVersion)
	}
	return &r, nil
}
