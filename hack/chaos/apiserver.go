package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/keymint/keymint/internal/testenv"
)

// apiServer is envtest's kube-apiserver process, which the harness kills
// and starts again with the same command line, port, certificates and etcd.
type apiServer struct {
	args []string
	env  []string
	pid  int
	cmd  *exec.Cmd
}

// findAPIServer finds the kube-apiserver serving env, by its secure port.
func findAPIServer(env *testenv.Env) (*apiServer, error) {
	port := "--secure-port=" + env.ControlPlane.GetAPIServer().Port
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "kube-apiserver" || !bytes.Contains(raw, []byte(port+"\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		environ, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "environ"))
		return &apiServer{args: args, env: strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00"), pid: pid}, nil
	}
	return nil, fmt.Errorf("no kube-apiserver process with %s", port)
}

// kill SIGKILLs the API server.
func (a *apiServer) kill() {
	if a.cmd != nil {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
		a.cmd = nil
		return
	}
	if a.pid != 0 {
		_ = syscall.Kill(a.pid, syscall.SIGKILL)
		a.pid = 0
	}
}

// start starts the API server again as it was started first, logging to
// log.
func (a *apiServer) start(log string) error {
	out, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	a.cmd = exec.Command(a.args[0], a.args[1:]...)
	a.cmd.Env = a.env
	a.cmd.Stdout, a.cmd.Stderr = out, out
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return a.cmd.Start()
}
