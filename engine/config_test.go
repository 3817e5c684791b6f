package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nriguard/nriguard/policy"
)

// A node setting may name a file of rules: read when the settings are, its
// errors naming the setting, the file and the line.
func TestConfigRuleFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var big strings.Builder
	big.WriteString("# the metadata service and 20,000 blocked networks\ndeny any 169.254.169.254\n")
	for i := range 20000 {
		fmt.Fprintf(&big, "deny any 10.%d.%d.0/24\n", i/256, i%256)
	}
	big.WriteString("default allow\n")
	ceiling := write("ceiling.rules", big.String())
	web := write("web.rules", "allow tcp 10.200.0.0/16:443\n")
	c, err := ParseConfig([]byte(fmt.Sprintf("ceiling_egress_file: %s\nprofiles:\n  web:\n    egress_file: %s\n", ceiling, web)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decide(c, Container{Name: "app", Annotations: map[string]string{"profile.nriguard.io": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Layers) != 2 || d.Layers[0].Egress == nil || len(d.Layers[0].Egress.Rules) != 20001 || d.Layers[0].Egress.Layer != policy.LayerCeiling ||
		d.Layers[1].Egress == nil || d.Layers[1].Egress.Layer != policy.LayerProfile {
		t.Fatalf("layers %+v: want the ceiling's 20,001 rules from its file, then the profile's", d.Layers)
	}
	// the same parse serves every container
	d2, _ := Decide(c, Container{Name: "other"})
	if d2.Layers[0].Egress != d.Layers[0].Egress {
		t.Error("the ceiling was parsed again for another container")
	}
	if v := d.Layers[0].LogValue().String(); strings.Contains(v, "10.0.1.0/24") || !strings.Contains(v, "20001 rules") {
		t.Errorf("a large layer logs as %s: want its rule count, not its rules", v)
	}

	bad := write("bad.rules", "deny any 169.254.169.254\n\ndeny any 10.0.0/33\n")
	for _, tc := range []struct{ config, want string }{
		{"ceiling_egress_file: " + bad, "config ceiling_egress_file: " + bad + `:3: rule 2 "deny any 10.0.0/33": invalid prefix length 33 (0-32)`},
		{"profiles:\n  x:\n    exec_file: " + bad, "config profiles.x.exec_file: " + bad + ":1: rule 1"},
		{"default_egress_file: rules/web.rules", `config default_egress_file: "rules/web.rules": expected an absolute path`},
		{"ceiling_egress: deny any 10.0.0.0/8\nceiling_egress_file: " + web, "config: ceiling_egress and ceiling_egress_file both set: set one"},
		{"ceiling_exec_file: " + filepath.Join(dir, "missing"), "config ceiling_exec_file: read rules: open " + filepath.Join(dir, "missing")},
	} {
		_, err := ParseConfig([]byte(tc.config))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %s...", tc.config, err, tc.want)
		}
	}
}
