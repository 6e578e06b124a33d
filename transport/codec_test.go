package transport

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/internal/wsio"
)

// TestAppendFrameHeader checks the header of every length class; the end-to-end tests read
// these frames with gorilla's client (TestLargeEventFrames for the 64-bit length).
func TestAppendFrameHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		f := wsio.AppendFrame(nil, websocket.BinaryMessage, bytes.Repeat([]byte{'b'}, n))
		if f[0] != 0x82 {
			t.Fatalf("size %d: first byte %x", n, f[0])
		}
		var plen, hdr int
		switch l := int(f[1]); {
		case l < 126:
			plen, hdr = l, 2
		case l == 126:
			plen, hdr = int(f[2])<<8|int(f[3]), 4
		default:
			for i := 2; i < 10; i++ {
				plen = plen<<8 | int(f[i])
			}
			hdr = 10
		}
		if plen != n || len(f) != hdr+n || strings.Count(string(f[hdr:]), "b") != n {
			t.Fatalf("size %d: header says %d, frame %d bytes", n, plen, len(f))
		}
	}
}
