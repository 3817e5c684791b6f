package labels

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The operator's files name nriguard's keys too: they must agree with the
// code's.
func TestInstallFilesUseTheKeys(t *testing.T) {
	hooks, _ := filepath.Glob("../install/hooks.d/*.json")
	if len(hooks) == 0 {
		t.Fatal("no hooks.d files")
	}
	for _, f := range hooks {
		var h struct {
			When struct{ Annotations map[string]string } `json:"when"`
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &h); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for expr := range h.When.Annotations {
			re := regexp.MustCompile(expr)
			for _, k := range Keys {
				for _, scoped := range []string{k, k + "/pod", k + "/container.web"} {
					if !re.MatchString(scoped) {
						t.Errorf("%s: %q does not match %s, which gives a container a policy", f, expr, scoped)
					}
				}
			}
			for _, other := range []string{"io.kubernetes.cri.container-name", TolerateMissingPlugins, "egress.nriguard.io.evil/x"} {
				if re.MatchString(other) {
					t.Errorf("%s: %q matches %s", f, expr, other)
				}
			}
		}
	}
	for _, f := range []string{"../install/containerd/nriguard.toml", "../install/kubernetes/daemonset.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), TolerateMissingPlugins) {
			t.Errorf("%s does not name %s", f, TolerateMissingPlugins)
		}
	}
}
