package servertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build builds roomlog from this module into a new temporary directory, for a TestMain whose
// tests start roomlog serve processes; remove deletes the directory. The build's errors go to
// standard error.
func Build() (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "roomlog-test-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "roomlog")
	build := exec.Command("go", "build", "-o", bin, "github.com/roomlog/roomlog/cmd/roomlog")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building roomlog: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// BuildForMain is Build for a TestMain: it exits the test binary when the build fails.
func BuildForMain() (bin string, remove func()) {
	bin, remove, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return bin, remove
}
