package faultfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// serveDaemon mounts the file system and runs the commands Client sends, one per line, answering
// each with one line: "ok [value]" or "err message". End of input unmounts it.
func serveDaemon(dir, backing string, in io.Reader, out io.Writer) error {
	f, err := mount(dir, backing)
	if err != nil {
		fmt.Fprintf(out, "err %v\n", err)
		return err
	}
	fmt.Fprintln(out, "ok ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.ParseInt(arg, 10, 64)
		reply := "ok"
		switch cmd {
		case "fail":
			f.FailSyncs(int(n))
		case "space":
			f.SetSpace(n)
		case "pause":
			f.PauseSyncs(int(n))
		case "held":
			reply = fmt.Sprint("ok ", f.Held())
		case "release":
			f.Release()
		case "cut":
			f.PowerCut()
		case "on":
			f.PowerOn()
		case "stats":
			s := f.stats()
			reply = fmt.Sprintf("ok %d %d %d", s.Syncs, s.FailedSyncs, s.PowerCuts)
		case "unsynced":
			reply = fmt.Sprint("ok ", f.Unsynced())
		case "unmount":
			if err := f.Unmount(); err != nil {
				fmt.Fprintf(out, "err %v\n", err)
				return err
			}
			fmt.Fprintln(out, "ok")
			return nil
		default:
			reply = "err unknown command " + strconv.Quote(cmd)
		}
		fmt.Fprintln(out, reply)
	}
	return f.Unmount() // the client went away
}
