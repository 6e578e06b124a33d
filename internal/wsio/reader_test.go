package wsio

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

// feed gives the stream to an Reader in chunks of the given sizes (cycled), the way reads
// would, and collects what it returns.
func feed(t testing.TB, in *Reader, stream []byte, chunks []int) ([]parsed, error) {
	t.Helper()
	var out []parsed
	for i := 0; ; i++ {
		for {
			op, p, err := in.Next()
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
			in.Idle() // as when the socket has nothing more for now
		}
		space := in.Space()
		if len(space) == 0 {
			t.Fatal("no space to read into")
		}
		n := min(len(space), len(stream), chunks[i%len(chunks)])
		copy(space, stream[:n])
		stream = stream[n:]
		in.Received(n)
	}
}

func TestInboundReassembles(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48,000 bytes: bigger than a read buffer
	var stream []byte
	stream = append(stream, maskedFrame(true, OpText, []byte(`{"type":"hello"}`), key)...)
	stream = append(stream, maskedFrame(false, OpText, []byte(`{"a":`), key)...)
	stream = append(stream, maskedFrame(true, OpPing, []byte("between fragments"), key)...)
	stream = append(stream, maskedFrame(false, OpContinuation, []byte(`1`), key)...)
	stream = append(stream, maskedFrame(true, OpContinuation, []byte(`}`), key)...)
	stream = append(stream, maskedFrame(true, OpBinary, big, key)...)
	stream = append(stream, maskedFrame(true, OpPong, nil, key)...)
	stream = append(stream, maskedFrame(true, OpText, nil, key)...)
	stream = append(stream, maskedFrame(true, OpClose, ClosePayload(1000, "bye"), key)...)
	want := []parsed{
		{OpText, []byte(`{"type":"hello"}`)},
		{OpPing, []byte("between fragments")},
		{OpText, []byte(`{"a":1}`)},
		{OpBinary, big},
		{OpPong, []byte{}},
		{OpText, []byte{}},
		{OpClose, ClosePayload(1000, "bye")},
	}
	for _, chunks := range [][]int{{1 << 20}, {1}, {3, 7, 1, 200}, {readBufferSize}, {readBufferSize - 5, 9}} {
		in := Reader{MaxMessage: 64 << 10}
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
	unmasked := maskedFrame(true, OpText, []byte("hi"), key)
	unmasked[1] &^= 0x80
	unmasked = append(unmasked[:2], unmasked[6:]...)
	rsv := maskedFrame(true, OpText, []byte("hi"), key)
	rsv[0] |= 0x40
	for _, tc := range []struct {
		name   string
		stream []byte
		code   int // 0: ErrMessageTooLarge
	}{
		{"unmasked", unmasked, websocket.CloseProtocolError},
		{"reserved bits", rsv, websocket.CloseProtocolError},
		{"unknown opcode", maskedFrame(true, 0x3, nil, key), websocket.CloseProtocolError},
		{"fragmented ping", maskedFrame(false, OpPing, nil, key), websocket.CloseProtocolError},
		{"long ping", maskedFrame(true, OpPing, make([]byte, 126), key), websocket.CloseProtocolError},
		{"stray continuation", maskedFrame(true, OpContinuation, []byte("x"), key), websocket.CloseProtocolError},
		{"message inside a message", append(maskedFrame(false, OpText, []byte("a"), key), maskedFrame(true, OpText, []byte("b"), key)...), websocket.CloseProtocolError},
		{"text not UTF-8", maskedFrame(true, OpText, []byte{0xff, 0xfe}, key), websocket.CloseInvalidFramePayloadData},
		{"frame over the limit", maskedFrame(true, OpText, make([]byte, 1001), key), 0},
		{"fragments over the limit", append(maskedFrame(false, OpBinary, make([]byte, 600), key), maskedFrame(true, OpContinuation, make([]byte, 600), key)...), 0},
		{"length past 2^63", append([]byte{0x82, 0x80 | 127, 0xff, 0, 0, 0, 0, 0, 0, 0}, key[:]...), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Reader{MaxMessage: 1000}
			_, err := feed(t, &in, tc.stream, []int{1 << 20})
			var ce *CloseError
			switch {
			case tc.code == 0 && !errors.Is(err, ErrMessageTooLarge):
				t.Fatalf("got %v, want ErrMessageTooLarge", err)
			case tc.code != 0 && (!errors.As(err, &ce) || ce.Code != tc.code):
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
		{[]byte{3}, ClosePayload(websocket.CloseProtocolError, "")},
		{ClosePayload(1000, "done"), ClosePayload(1000, "")},
		{ClosePayload(4001, ""), ClosePayload(4001, "")},
		{[]byte{0x03, 0xed}, ClosePayload(websocket.CloseProtocolError, "")}, // 1005 is never sent
		{ClosePayload(999, ""), ClosePayload(websocket.CloseProtocolError, "")},
		{append(ClosePayload(1000, ""), 0xff), ClosePayload(websocket.CloseProtocolError, "")},
	} {
		if got := EchoClose(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("EchoClose(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzInbound: any bytes, in any chunking, give frames or a close error, never a panic, a hang or
// a frame over the limit; and a well-formed stream built from the input comes back exactly.
func FuzzInbound(f *testing.F) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f.Add(maskedFrame(true, OpText, []byte(`{"type":"ping"}`), key), uint8(3))
	f.Add(append(maskedFrame(false, OpBinary, []byte{1, 2}, key), maskedFrame(true, OpContinuation, []byte{3}, key)...), uint8(1))
	f.Add(maskedFrame(true, OpClose, ClosePayload(1001, "away"), key), uint8(200))
	f.Add([]byte{0x81, 0xfe, 0x00}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const limit = 4096
		chunks := []int{int(chunk)%64 + 1, int(chunk) + 1}

		in := Reader{MaxMessage: limit}
		got, err := feed(t, &in, data, chunks)
		for _, p := range got {
			if len(p.payload) > limit {
				t.Fatalf("a %d-byte payload passed a %d-byte limit", len(p.payload), limit)
			}
		}
		var ce *CloseError
		if err != nil && !errors.Is(err, ErrMessageTooLarge) && !errors.As(err, &ce) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}

		// The input as the payloads of well-formed frames: they come back as sent.
		var stream []byte
		var want [][]byte
		for p := range bytes.SplitSeq(data, []byte{0}) {
			if len(p) > limit {
				p = p[:limit]
			}
			stream = append(stream, maskedFrame(true, OpBinary, p, key)...)
			want = append(want, p)
		}
		in = Reader{MaxMessage: limit}
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
