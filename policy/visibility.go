package policy

import (
	"fmt"
	"strings"
)

// Visibility is what a policed container reports besides refusals: its
// allowed flows (a record when one begins, then its counts) and its execs.
type Visibility uint8

const (
	VisFlows Visibility = 1 << iota
	VisExecs
	VisOff  Visibility = 0
	VisBoth            = VisFlows | VisExecs
)

func (v Visibility) String() string {
	switch v {
	case VisFlows:
		return "flows"
	case VisExecs:
		return "execs"
	case VisBoth:
		return "both"
	}
	return "off"
}

// ParseVisibility parses a visibility value: off, flows, execs or both.
func ParseVisibility(key, value string) (Visibility, error) {
	switch strings.TrimSpace(value) {
	case "off", "":
		return VisOff, nil
	case "flows":
		return VisFlows, nil
	case "execs":
		return VisExecs, nil
	case "both":
		return VisBoth, nil
	}
	return VisOff, &Error{Key: key, Msg: fmt.Sprintf("invalid visibility %q: expected off, flows, execs or both", value)}
}
