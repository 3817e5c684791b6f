package probe

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exec operations, for the exec policy:
//
//	exec:PATH[:ARG0]    run PATH (argv[0] ARG0, default "true": busybox copies
//	                    run that applet); "ran", or "denied" (the exec failed
//	                    with EPERM or the program was killed by SIGKILL)
//	execin:DIR:PATH     the same from working directory DIR (relative PATH)
//	memfd:SRC           copy SRC into a memfd and run it with execveat(AT_EMPTY_PATH)
//
// How a denial looked (EPERM or SIGKILL) goes to stderr; the result line
// is the same for both backends, so that one table serves both.
func execOp(kind, arg string) (string, error) {
	switch kind {
	case "exec":
		p, arg0, _ := strings.Cut(arg, ":")
		return runProgram(exec.Cmd{Path: p, Args: []string{orDefault(arg0, "true")}})
	case "execin":
		dir, p, _ := strings.Cut(arg, ":")
		return runProgram(exec.Cmd{Path: p, Args: []string{"true"}, Dir: dir})
	case "memfd":
		return memfdExec(arg)
	}
	return "", fmt.Errorf("unknown operation %q", kind)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func runProgram(cmd exec.Cmd) (string, error) {
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "ran", nil
	case errors.Is(err, syscall.EPERM):
		fmt.Fprintln(os.Stderr, "exec refused: EPERM")
		return "denied", nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			fmt.Fprintln(os.Stderr, "program killed: SIGKILL")
			return "denied", nil
		}
		if ee.ExitCode() == 126 { // the execveat child's way of saying EPERM
			return "denied", nil
		}
		return fmt.Sprintf("exit %d", ee.ExitCode()), nil
	}
	return "", err
}

// memfdExec runs a copy of src that exists only in memory. The execveat
// happens in a child (this binary, started with ExecveatArg) so that the
// probe itself survives a SIGKILL backend.
func memfdExec(src string) (string, error) {
	fd, err := unix.MemfdCreate("nriguard-probe", 0)
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(fd), "memfd")
	defer f.Close()
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if _, err := io.Copy(f, in); err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Cmd{Path: self, Args: []string{self, ExecveatArg}, ExtraFiles: []*os.File{f}, Env: os.Environ(), Stderr: os.Stderr}
	return runProgram(cmd)
}

// ExecveatArg makes a probe process execveat its fd 3.
const ExecveatArg = "__execveat"

// Execveat replaces this process with the program open at fd 3. It returns
// only on failure, with the exit code to use (126 for EPERM).
func Execveat() int {
	argv := []*byte{&[]byte("true\x00")[0], nil}
	envp := []*byte{nil}
	empty := []byte{0}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, 3, uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	fmt.Fprintln(os.Stderr, "execveat:", errno)
	if errno == unix.EPERM {
		return 126
	}
	return 1
}
