package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

var sendSpec = sync.OnceValues(loadSend)

// pinSendCheck names the per-send check's link in a copy's directory.
const pinSendCheck = "link_send_sender"

// SendCheck tells whether this kernel can check each send of a flow
// allowed for its sender (send.c: BPF LSM's socket_sendmsg hook): without
// it, a connected socket carries its sender's allowance to whoever holds it
// (docs/policy.md, "Who sends").
func SendCheck() bool {
	be, err := ExecBackend()
	return err == nil && be == BackendLSM
}

// ensureSendCheck attaches the per-send check to the copy pinned in dir,
// if it is not there and the kernel can: a copy gets it with its first
// policy whose verdicts depend on the sender, and keeps it while it lives
// (it goes with the copy's directory). Its events go to the copy's ring,
// ev: the copy's own, or the ring shared by the copies of a pin root. The
// caller holds the host lock.
func (s *egressSet) ensureSendCheck(dir string, ev EventMaps) error {
	if !SendCheck() {
		return nil
	}
	pin := filepath.Join(dir, pinSendCheck)
	if _, err := os.Stat(pin); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cs, err := sendSpec()
	if err != nil {
		return err
	}
	cs = cs.Copy()
	cs.Maps[sendMapEvents].MaxEntries = ev.Ring.MaxEntries() // a ring is sized by whoever made it
	var objs sendObjects
	err = cs.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		sendMapSockVerdicts: s.SockVerdicts, sendMapEvents: ev.Ring, sendMapLostEvents: ev.Lost}})
	if err != nil {
		return fmt.Errorf("load the per-send check: %w", err)
	}
	defer objs.Close()
	lk, err := link.AttachLSM(link.LSMOptions{Program: objs.NgSendSender})
	if err != nil {
		return fmt.Errorf("attach the per-send check: %w", err)
	}
	defer lk.Close()
	if err := lk.Pin(pin); err != nil {
		return fmt.Errorf("pin the per-send check: %w", err)
	}
	return nil
}
