package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A handoff carries a decision from the NRI plugin to the OCI hook the
// plugin asked the runtime to run (createRuntime), on runtimes where the
// plugin cannot attach at StartContainer with a failure that refuses the
// container (CRI-O: no pid there, and its errors are ignored) or cannot
// adjust the container's seccomp policy (containerd 1.7). The hook attaches
// exactly what the plugin decided, and a hook that fails stops the
// container. The file is the plugin's alone (root, 0600, in /run).

// DefaultHandoffDir is where the plugin leaves decisions for its hook.
const DefaultHandoffDir = "/run/nriguard/handoff"

// WriteHandoff leaves c's decision in dir for the hook.
func WriteHandoff(dir string, c Container, d *Decision) error {
	if err := checkHandoffID(c.ID); err != nil {
		return err
	}
	data, err := json.Marshal(textOf(c, d))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+c.ID)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, c.ID))
}

// ReadHandoff reads the decision the plugin left in dir for container id.
func ReadHandoff(dir, id string) (Container, *Decision, error) {
	if err := checkHandoffID(id); err != nil {
		return Container{}, nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return Container{}, nil, fmt.Errorf("the NRI plugin left no decision for container %s in %s (was it created while the plugin was down?)", id, dir)
	} else if err != nil {
		return Container{}, nil, err
	}
	var h decisionText
	if err := json.Unmarshal(data, &h); err != nil {
		return Container{}, nil, fmt.Errorf("the decision for container %s: %w", id, err)
	}
	if h.ID != id {
		return Container{}, nil, fmt.Errorf("the decision in %s is for container %q", filepath.Join(dir, id), h.ID)
	}
	return h.parse()
}

// RemoveHandoff removes what the plugin left for container id, if anything.
func RemoveHandoff(dir, id string) {
	if checkHandoffID(id) == nil {
		os.Remove(filepath.Join(dir, id))
	}
}

// container ids are hex (containerd, CRI-O); refuse anything that could
// name another file
func checkHandoffID(id string) error {
	if id == "" || filepath.Base(id) != id || id[0] == '.' {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}
