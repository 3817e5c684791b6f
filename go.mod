module github.com/nriguard/nriguard

go 1.25.0

require (
	github.com/cilium/ebpf v0.22.0 // indirect
	github.com/containerd/nri v0.12.5 // indirect
	github.com/opencontainers/runtime-spec v1.3.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
)

tool github.com/cilium/ebpf/cmd/bpf2go
