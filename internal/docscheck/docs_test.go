// Package docscheck holds tests that keep the docs true to the tree.
package docscheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const repo = "../.."

// Every path docs/contributing.md names exists.
func TestContributingPathsExist(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repo, "docs/contributing.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths := regexp.MustCompile("`([a-z0-9_.-]+/[A-Za-z0-9_./-]*)`").FindAllStringSubmatch(string(doc), -1)
	if len(paths) < 20 {
		t.Fatalf("found only %d paths: the pattern is broken", len(paths))
	}
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(repo, p[1])); err != nil {
			t.Errorf("docs/contributing.md names %s: %v", p[1], err)
		}
	}
}

// docs/design.md's package table lists every package, and no other.
func TestDesignListsEveryPackage(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repo, "docs/design.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	section = section[strings.Index(section, "## Packages"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var listed []string
	for _, row := range regexp.MustCompile(`(?m)^\| (.*?) \|`).FindAllStringSubmatch(section, -1) {
		for _, p := range regexp.MustCompile("`([a-z/]+?)/?`").FindAllStringSubmatch(row[1], -1) {
			listed = append(listed, strings.TrimSuffix(p[1], "/"))
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", filepath.Join(repo, "...")).Output()
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(repo)
	var pkgs []string
	for _, dir := range strings.Fields(string(out)) {
		rel, _ := filepath.Rel(abs, dir)
		pkgs = append(pkgs, rel)
	}
	for _, p := range pkgs {
		if !slices.Contains(listed, p) {
			t.Errorf("package %s is not in docs/design.md's package table", p)
		}
	}
	for _, l := range listed {
		if !slices.Contains(pkgs, l) {
			t.Errorf("docs/design.md lists %s, which is not a package", l)
		}
	}
}
