//go:build !linux

package faultfs

import (
	"errors"
	"fmt"
	"io"
)

func serveDaemon(dir, backing string, in io.Reader, out io.Writer) error {
	err := errors.New("faultfs: FUSE mounts need Linux")
	fmt.Fprintf(out, "err %v\n", err)
	return err
}
