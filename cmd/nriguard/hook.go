package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/oci"
)

func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(oci.ConfigEnv); v != "" {
		return v
	}
	return engine.DefaultConfigPath
}

// runHook: nriguard hook [--config F] createRuntime|prestart|poststop
// (the OCI state on stdin). A failure exits 1 with the reason on stderr,
// which makes the runtime refuse the container.
func runHook(args []string) int {
	fs := flag.NewFlagSet("hook", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "node settings (default $"+oci.ConfigEnv+" or "+engine.DefaultConfigPath+")")
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned")
	handoff := fs.String("handoff", "", "attach the decision the NRI plugin left in this directory (the hook the plugin adds on CRI-O and containerd 1.7)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: nriguard hook [--config F] [--pin-root R] [--handoff DIR] createRuntime|prestart|poststop  (OCI state on stdin)")
		return 2
	}
	if *handoff != "" {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		// the plugin's attachment, made in its stead: it reconciles and detaches it
		eng, err := engine.New(&engine.Config{}, engine.Options{PinRoot: *pinRoot, Owner: bpf.OwnerNRI, Log: log})
		if err == nil {
			err = oci.HookHandoff(eng, *handoff, fs.Arg(0), os.Stdin)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nriguard:", err)
			return 1
		}
		return 0
	}
	cfg, err := engine.LoadConfig(configPath(*cfgPath))
	if err == nil {
		var eng *engine.Engine
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if eng, err = engine.New(cfg, engine.Options{PinRoot: *pinRoot, Owner: bpf.OwnerHook, Log: log}); err == nil {
			err = oci.Hook(eng, fs.Arg(0), os.Stdin)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard:", err)
		return 1
	}
	return 0
}
