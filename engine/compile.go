package engine

import (
	"cmp"
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
	programs, warnings, err := resolvePrograms(layers, root)
	if err != nil {
		return nil, nil, warnings, err
	}
	c, rl, err := compileEgress(mode, layers, programs)
	return c, rl, warnings, err
}

// resolvePrograms resolves the exe= patterns of layers inside root: the
// files they name, with their stamps and the patterns that name each.
func resolvePrograms(layers []*policy.Egress, root string) (map[policy.FileID]resolvedProgram, []string, error) {
	var patterns []string
	for _, l := range layers {
		for _, r := range l.Rules {
			if p := r.Quals.ExePattern(); p != "" && !slices.Contains(patterns, p) {
				patterns = append(patterns, p)
			}
		}
	}
	if len(patterns) == 0 {
		return nil, nil, nil
	}
	byFile, stamps, weak, warnings, err := resolve.Programs(root, "exe=", patterns)
	if err != nil {
		return nil, warnings, err
	}
	out := make(map[policy.FileID]resolvedProgram, len(byFile))
	for id, pats := range byFile {
		slices.Sort(pats)
		out[id] = resolvedProgram{Stamp: stamps[id], Patterns: pats, Weak: weak[id]}
	}
	return out, warnings, nil
}

// compileEgress compiles layers with the files of their exe= patterns
// already resolved: files named by the same patterns share a program class.
func compileEgress(mode policy.Mode, layers []*policy.Egress, programs map[policy.FileID]resolvedProgram) (*policy.Compiled, *Ruler, error) {
	var progs policy.Programs
	files := map[policy.FileID]policy.ProgramFile{}
	classOf := map[string]uint32{}
	ids := make([]policy.FileID, 0, len(programs))
	for id := range programs {
		ids = append(ids, id)
	}
	// (in a fixed order, so that the same files give the same classes)
	slices.SortFunc(ids, func(a, b policy.FileID) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Ino, b.Ino))
	})
	for _, id := range ids {
		p := programs[id]
		k := strings.Join(p.Patterns, "\x00")
		class, ok := classOf[k]
		if !ok {
			progs = append(progs, p.Patterns)
			class = uint32(len(progs))
			classOf[k] = class
		}
		files[id] = policy.ProgramFile{Stamp: p.Stamp, Class: class}
	}
	c, err := policy.CompileFor(mode, progs, layers...)
	if err != nil {
		return nil, nil, fmt.Errorf("egress: %w", err)
	}
	c.ProgramFiles = files
	rl := NewRuler(layers, c, progs)
	if !c.HasPrincipals() {
		c.ProgramFiles = nil // the kernel needs them only for dependent classes
	}
	return c, rl, nil
}
