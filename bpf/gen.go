// Package bpf holds nriguard's BPF programs (C, compiled by bpf2go; the
// objects and bindings are committed so that building needs no clang) and
// the loader that attaches them to a cgroup and pins them.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type event_hdr -type flow_event -type exec_event -type run4 -type run6 -type port_run -type pkey -type pval egress egress.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel exec exec.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel send send.c
