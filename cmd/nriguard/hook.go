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
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: nriguard hook [--config F] [--pin-root R] createRuntime|prestart|poststop  (OCI state on stdin)")
		return 2
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
