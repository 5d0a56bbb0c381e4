package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopWithMake makes the demo stop when the make that runs it is told to
// stop. GNU make passes SIGTERM on to its recipe, but on SIGINT (kill -INT
// to make's own process, not to its process group as Ctrl-C is) it only
// waits for the recipe, inside its signal handler, where SIGINT is blocked:
// so the demo watches its parent's blocked signals and stops itself. It
// also asks the kernel for SIGTERM should make die.
func stopWithMake(ctx context.Context) {
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0)
	ppid := os.Getppid()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ppid))
	if err != nil || strings.TrimSpace(string(comm)) != "make" {
		return
	}
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if blocksSIGINT(ppid) {
				_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
				return
			}
		}
	}()
}

// blocksSIGINT reports whether process pid has SIGINT blocked.
func blocksSIGINT(pid int) bool {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigBlk:"); ok {
			bits, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && bits&(1<<(uint(syscall.SIGINT)-1)) != 0
		}
	}
	return false
}

// What the demo started, to stop in reverse order however it ends.
var (
	stopMu   sync.Mutex
	stopping []func()
)

func atStop(f func()) {
	stopMu.Lock()
	defer stopMu.Unlock()
	stopping = append(stopping, f)
}

func stopAll() {
	stopMu.Lock()
	defer stopMu.Unlock()
	for _, s := range slices.Backward(stopping) {
		s()
	}
	stopping = nil
}
