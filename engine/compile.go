package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

// CompileEgress compiles a container's egress layers for mode. Where rules
// name programs (exe=), the patterns are resolved inside root (the
// container's root as this process can open it) to the files the kernel
// runs, and each file gets the program class of the patterns that name it.
// Warnings are patterns that name no file. The Ruler names the rules that
// decide the container's events.
func CompileEgress(mode policy.Mode, layers []*policy.Egress, root string) (*policy.Compiled, *Ruler, []string, error) {
	var patterns []string
	for _, l := range layers {
		for _, r := range l.Rules {
			if p := r.Quals.ExePattern(); p != "" && !slices.Contains(patterns, p) {
				patterns = append(patterns, p)
			}
		}
	}
	var progs policy.Programs
	files := map[policy.FileID]policy.ProgramFile{}
	var warnings []string
	if len(patterns) > 0 {
		byFile, stamps, w, err := resolve.Programs(root, "exe=", patterns)
		warnings = w
		if err != nil {
			return nil, nil, warnings, err
		}
		classOf := map[string]uint32{}
		for id, pats := range byFile {
			slices.Sort(pats)
			k := strings.Join(pats, "\x00")
			class, ok := classOf[k]
			if !ok {
				progs = append(progs, pats)
				class = uint32(len(progs))
				classOf[k] = class
			}
			files[id] = policy.ProgramFile{Stamp: stamps[id], Class: class}
		}
	}
	c, err := policy.CompileFor(mode, progs, layers...)
	if err != nil {
		return nil, nil, warnings, fmt.Errorf("egress: %w", err)
	}
	c.ProgramFiles = files
	rl := NewRuler(layers, c, progs)
	if !c.HasPrincipals() {
		c.ProgramFiles = nil // the kernel needs them only for dependent classes
	}
	return c, rl, warnings, nil
}
