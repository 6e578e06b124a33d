package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/gorilla/websocket"
)

// maskedFrame builds a masked client frame (RFC 6455, 5.2).
func maskedFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i&3]
	}
	return b
}

type parsed struct {
	op      byte
	payload []byte
}

// feed gives the stream to an inbound in chunks of the given sizes (cycled), the way reads
// would, and collects what it returns.
func feed(t testing.TB, in *inbound, stream []byte, chunks []int) ([]parsed, error) {
	t.Helper()
	var out []parsed
	for i := 0; ; i++ {
		for {
			op, p, err := in.next()
			if err != nil {
				return out, err
			}
			if op == 0 {
				break
			}
			out = append(out, parsed{op, bytes.Clone(p)})
		}
		if len(stream) == 0 {
			if in.buf != nil && in.r == in.w {
				t.Fatalf("all consumed, but the buffer is still held")
			}
			return out, nil
		}
		if i%2 == 1 {
			in.idle() // as when the socket has nothing more for now
		}
		space := in.space()
		if len(space) == 0 {
			t.Fatal("no space to read into")
		}
		n := min(len(space), len(stream), chunks[i%len(chunks)])
		copy(space, stream[:n])
		stream = stream[n:]
		in.received(n)
	}
}

func TestInboundReassembles(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48,000 bytes: bigger than a read buffer
	var stream []byte
	stream = append(stream, maskedFrame(true, opText, []byte(`{"type":"hello"}`), key)...)
	stream = append(stream, maskedFrame(false, opText, []byte(`{"a":`), key)...)
	stream = append(stream, maskedFrame(true, opPing, []byte("between fragments"), key)...)
	stream = append(stream, maskedFrame(false, opContinuation, []byte(`1`), key)...)
	stream = append(stream, maskedFrame(true, opContinuation, []byte(`}`), key)...)
	stream = append(stream, maskedFrame(true, opBinary, big, key)...)
	stream = append(stream, maskedFrame(true, opPong, nil, key)...)
	stream = append(stream, maskedFrame(true, opText, nil, key)...)
	stream = append(stream, maskedFrame(true, opClose, closePayload(1000, "bye"), key)...)
	want := []parsed{
		{opText, []byte(`{"type":"hello"}`)},
		{opPing, []byte("between fragments")},
		{opText, []byte(`{"a":1}`)},
		{opBinary, big},
		{opPong, []byte{}},
		{opText, []byte{}},
		{opClose, closePayload(1000, "bye")},
	}
	for _, chunks := range [][]int{{1 << 20}, {1}, {3, 7, 1, 200}, {readBufferSize}, {readBufferSize - 5, 9}} {
		in := inbound{maxMessage: 64 << 10}
		got, err := feed(t, &in, stream, chunks)
		if err != nil {
			t.Fatalf("chunks %v: %v", chunks, err)
		}
		if len(got) != len(want) {
			t.Fatalf("chunks %v: got %d frames, want %d", chunks, len(got), len(want))
		}
		for i := range want {
			if got[i].op != want[i].op || !bytes.Equal(got[i].payload, want[i].payload) {
				t.Fatalf("chunks %v: frame %d is op %d %.40q, want op %d %.40q", chunks, i, got[i].op, got[i].payload, want[i].op, want[i].payload)
			}
		}
	}
}

func TestInboundRefuses(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	unmasked := maskedFrame(true, opText, []byte("hi"), key)
	unmasked[1] &^= 0x80
	unmasked = append(unmasked[:2], unmasked[6:]...)
	rsv := maskedFrame(true, opText, []byte("hi"), key)
	rsv[0] |= 0x40
	for _, tc := range []struct {
		name   string
		stream []byte
		code   int // 0: errMessageTooLarge
	}{
		{"unmasked", unmasked, websocket.CloseProtocolError},
		{"reserved bits", rsv, websocket.CloseProtocolError},
		{"unknown opcode", maskedFrame(true, 0x3, nil, key), websocket.CloseProtocolError},
		{"fragmented ping", maskedFrame(false, opPing, nil, key), websocket.CloseProtocolError},
		{"long ping", maskedFrame(true, opPing, make([]byte, 126), key), websocket.CloseProtocolError},
		{"stray continuation", maskedFrame(true, opContinuation, []byte("x"), key), websocket.CloseProtocolError},
		{"message inside a message", append(maskedFrame(false, opText, []byte("a"), key), maskedFrame(true, opText, []byte("b"), key)...), websocket.CloseProtocolError},
		{"text not UTF-8", maskedFrame(true, opText, []byte{0xff, 0xfe}, key), websocket.CloseInvalidFramePayloadData},
		{"frame over the limit", maskedFrame(true, opText, make([]byte, 1001), key), 0},
		{"fragments over the limit", append(maskedFrame(false, opBinary, make([]byte, 600), key), maskedFrame(true, opContinuation, make([]byte, 600), key)...), 0},
		{"length past 2^63", append([]byte{0x82, 0x80 | 127, 0xff, 0, 0, 0, 0, 0, 0, 0}, key[:]...), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := inbound{maxMessage: 1000}
			_, err := feed(t, &in, tc.stream, []int{1 << 20})
			var ce *closeError
			switch {
			case tc.code == 0 && !errors.Is(err, errMessageTooLarge):
				t.Fatalf("got %v, want errMessageTooLarge", err)
			case tc.code != 0 && (!errors.As(err, &ce) || ce.code != tc.code):
				t.Fatalf("got %v, want close %d", err, tc.code)
			}
		})
	}
}

func TestEchoClose(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want []byte
	}{
		{nil, nil},
		{[]byte{3}, closePayload(websocket.CloseProtocolError, "")},
		{closePayload(1000, "done"), closePayload(1000, "")},
		{closePayload(4001, ""), closePayload(4001, "")},
		{[]byte{0x03, 0xed}, closePayload(websocket.CloseProtocolError, "")}, // 1005 is never sent
		{closePayload(999, ""), closePayload(websocket.CloseProtocolError, "")},
		{append(closePayload(1000, ""), 0xff), closePayload(websocket.CloseProtocolError, "")},
	} {
		if got := echoClose(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("echoClose(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzInbound: any bytes, in any chunking, give frames or a close error, never a panic, a hang or
// a frame over the limit; and a well-formed stream built from the input comes back exactly.
func FuzzInbound(f *testing.F) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f.Add(maskedFrame(true, opText, []byte(`{"type":"ping"}`), key), uint8(3))
	f.Add(append(maskedFrame(false, opBinary, []byte{1, 2}, key), maskedFrame(true, opContinuation, []byte{3}, key)...), uint8(1))
	f.Add(maskedFrame(true, opClose, closePayload(1001, "away"), key), uint8(200))
	f.Add([]byte{0x81, 0xfe, 0x00}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const limit = 4096
		chunks := []int{int(chunk)%64 + 1, int(chunk) + 1}

		in := inbound{maxMessage: limit}
		got, err := feed(t, &in, data, chunks)
		for _, p := range got {
			if len(p.payload) > limit {
				t.Fatalf("a %d-byte payload passed a %d-byte limit", len(p.payload), limit)
			}
		}
		var ce *closeError
		if err != nil && !errors.Is(err, errMessageTooLarge) && !errors.As(err, &ce) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}

		// The input as the payloads of well-formed frames: they come back as sent.
		var stream []byte
		var want [][]byte
		for p := range bytes.SplitSeq(data, []byte{0}) {
			if len(p) > limit {
				p = p[:limit]
			}
			stream = append(stream, maskedFrame(true, opBinary, p, key)...)
			want = append(want, p)
		}
		in = inbound{maxMessage: limit}
		got, err = feed(t, &in, stream, chunks)
		if err != nil {
			t.Fatalf("well-formed stream refused: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d messages, sent %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i].payload, want[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	})
}

func TestUnmask(t *testing.T) {
	key := [4]byte{0xde, 0xad, 0xbe, 0xef}
	for n := range 40 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rand.IntN(256))
		}
		want := bytes.Clone(p)
		for i := range want {
			want[i] ^= key[i&3]
		}
		unmask(p, key)
		if !bytes.Equal(p, want) {
			t.Fatalf("unmask of %d bytes wrong", n)
		}
	}
}
