package wsio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// This file is the read half of RFC 6455 for a server: the bytes a client sends, as they come,
// turned into whole messages and control frames. gorilla/websocket does the opening handshake;
// reading frames here, rather than with a goroutine parked in gorilla's NextReader, is what lets a
// connection with nothing to read hold no goroutine and no read buffer (see readReady).

// Opcodes (RFC 6455, 5.2); the data opcodes equal gorilla's message types.
const (
	OpContinuation = 0x0
	OpText         = websocket.TextMessage
	OpBinary       = websocket.BinaryMessage
	OpClose        = websocket.CloseMessage
	OpPing         = websocket.PingMessage
	OpPong         = websocket.PongMessage
)

// MaxControlPayload is the largest payload of a control frame (RFC 6455, 5.5).
const MaxControlPayload = 125

// A CloseError ends the connection with a WebSocket close code.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("websocket close %d: %s", e.Code, e.Reason) }

// ProtocolError is a CloseError with code 1002 (protocol error).
func ProtocolError(format string, args ...any) error {
	return &CloseError{Code: websocket.CloseProtocolError, Reason: fmt.Sprintf(format, args...)}
}

// ErrMessageTooLarge: a message over the frame limit (close 1009, after an error frame).
var ErrMessageTooLarge = errors.New("message too large")

// readBufferSize is the size of the buffers lent to connections while they read.
const readBufferSize = 16 << 10

var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// Reader reassembles a client's messages. Its zero value, with MaxMessage set, is ready.
//
// Invariant: buf is nil whenever every byte received has been consumed, so an idle connection
// holds no buffer; a partial frame keeps it (a frame of any size fits, up to MaxMessage).
type Reader struct {
	MaxMessage int

	buf  []byte // received bytes are buf[r:w]; from readBuffers when its capacity is readBufferSize
	r, w int

	msg   []byte // fragments of the data message being reassembled
	msgOp byte   // its opcode, 0 when no message is open
}

// space returns buffer space to read into (never none), lending a buffer when there is none.
func (in *Reader) Space() []byte {
	switch {
	case in.buf == nil:
		in.buf = *readBuffers.Get().(*[]byte)
		in.r, in.w = 0, 0
	case in.w == len(in.buf) && in.r > 0:
		in.w = copy(in.buf, in.buf[in.r:in.w])
		in.r = 0
	case in.w == len(in.buf):
		// A partial frame set aside by idle, or one that fills the buffer: move to a bigger one.
		var bigger []byte
		if len(in.buf) < readBufferSize {
			bigger = *readBuffers.Get().(*[]byte)
		} else {
			bigger = make([]byte, 2*len(in.buf))
		}
		in.w = copy(bigger, in.buf[in.r:in.w])
		in.r = 0
		in.buf = bigger
	}
	return in.buf[in.w:]
}

// idle is called when the socket has nothing more for now: a partial frame moves out of the lent
// buffer into one of its own size, so a client that stops mid-frame does not hold a whole buffer.
func (in *Reader) Idle() {
	if in.buf == nil || len(in.buf) != readBufferSize {
		return
	}
	if in.r == in.w {
		in.release()
		return
	}
	part := append([]byte(nil), in.buf[in.r:in.w]...)
	b := in.buf
	readBuffers.Put(&b)
	in.buf, in.r, in.w = part, 0, len(part)
}

// received records n bytes read into space().
func (in *Reader) Received(n int) {
	in.w += n
	in.release()
}

// release gives back the buffer once everything in it is consumed.
func (in *Reader) release() {
	if in.buf != nil && in.r == in.w {
		if len(in.buf) == readBufferSize {
			b := in.buf
			readBuffers.Put(&b)
		}
		in.buf, in.r, in.w = nil, 0, 0
	}
}

// frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	op     byte
	length int
	mask   [4]byte
	size   int // bytes of the header itself
}

// parseHeader parses the frame header at the start of b; ok is false while b holds only part of
// it. Everything a server must refuse in a header is refused here (RFC 6455, 5.1-5.5).
func parseHeader(b []byte, MaxMessage int) (h frameHeader, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	h.fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, false, ProtocolError("reserved bits set without a negotiated extension")
	}
	h.op = b[0] & 0x0f
	switch h.op {
	case OpContinuation, OpText, OpBinary:
	case OpClose, OpPing, OpPong:
		if !h.fin {
			return h, false, ProtocolError("fragmented control frame")
		}
	default:
		return h, false, ProtocolError("unknown opcode %d", h.op)
	}
	if b[1]&0x80 == 0 {
		return h, false, ProtocolError("client frame not masked")
	}
	n, size := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		n, size = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		n, size = binary.BigEndian.Uint64(b[2:]), 10
	}
	if h.op >= OpClose && n > MaxControlPayload {
		return h, false, ProtocolError("control frame payload of %d bytes", n)
	}
	if n > uint64(MaxMessage) {
		return h, false, ErrMessageTooLarge
	}
	if len(b) < size+4 {
		return h, false, nil
	}
	copy(h.mask[:], b[size:])
	h.length, h.size = int(n), size+4
	return h, true, nil
}

// next returns the next whole message (OpText or OpBinary) or control frame, or op 0 when more
// bytes are needed. A data message's payload is the caller's; a control frame's is valid until
// the next call. err is a *CloseError or ErrMessageTooLarge, after which in must not be used.
func (in *Reader) Next() (op byte, payload []byte, err error) {
	in.release() // the previous control frame's payload is no longer needed
	for {
		b := in.buf[in.r:in.w]
		h, ok, err := parseHeader(b, in.MaxMessage)
		if err != nil {
			return 0, nil, err
		}
		if !ok || len(b) < h.size+h.length {
			in.release() // when nothing is left of what was received
			in.makeRoom(h, ok)
			return 0, nil, nil
		}
		p := b[h.size : h.size+h.length]
		unmask(p, h.mask)
		in.r += h.size + h.length
		switch {
		case h.op >= OpClose:
			return h.op, p, nil // in the buffer, which the next call releases if it is consumed
		case h.op == OpContinuation && in.msgOp == 0:
			return 0, nil, ProtocolError("continuation frame without a message")
		case h.op != OpContinuation && in.msgOp != 0:
			return 0, nil, ProtocolError("new message inside a fragmented one")
		}
		if h.op != OpContinuation {
			in.msgOp = h.op
		}
		if len(in.msg)+len(p) > in.MaxMessage {
			return 0, nil, ErrMessageTooLarge
		}
		if !h.fin {
			in.msg = append(in.msg, p...)
			continue
		}
		var msg []byte
		if in.msg == nil {
			msg = append(make([]byte, 0, len(p)), p...)
		} else {
			msg = append(in.msg, p...)
		}
		op := in.msgOp
		in.msg, in.msgOp = nil, 0
		in.release()
		if op == OpText && !utf8.Valid(msg) {
			return 0, nil, &CloseError{Code: websocket.CloseInvalidFramePayloadData, Reason: "text message is not UTF-8"}
		}
		return op, msg, nil
	}
}

// makeRoom makes sure a frame whose header is parsed fits in the buffer once received.
func (in *Reader) makeRoom(h frameHeader, headerParsed bool) {
	if !headerParsed {
		return // a header always fits: it is at most 14 bytes
	}
	need := h.size + h.length
	if need <= len(in.buf)-in.r {
		return
	}
	if need <= len(in.buf) {
		in.w = copy(in.buf, in.buf[in.r:in.w])
		in.r = 0
		return
	}
	var bigger []byte
	if need <= readBufferSize {
		bigger = *readBuffers.Get().(*[]byte)
	} else {
		bigger = make([]byte, need)
	}
	in.w = copy(bigger, in.buf[in.r:in.w])
	in.r = 0
	if len(in.buf) == readBufferSize {
		b := in.buf
		readBuffers.Put(&b)
	}
	in.buf = bigger
}

// unmask applies the client's masking key (RFC 6455, 5.3), eight bytes at a time.
func unmask(p []byte, key [4]byte) {
	k4 := binary.LittleEndian.Uint32(key[:])
	k8 := uint64(k4) | uint64(k4)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// ClosePayload is the payload of a close frame with the code and reason.
func ClosePayload(code int, reason string) []byte {
	if len(reason) > MaxControlPayload-2 {
		reason = reason[:MaxControlPayload-2]
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// EchoClose is the payload answering a client's close frame (RFC 6455, 5.5.1).
func EchoClose(p []byte) []byte {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1 || !validCloseCode(int(binary.BigEndian.Uint16(p))) || !utf8.Valid(p[2:]):
		return ClosePayload(websocket.CloseProtocolError, "")
	}
	return ClosePayload(int(binary.BigEndian.Uint16(p)), "")
}

// validCloseCode reports whether a client may send the code (RFC 6455, 7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	}
	return false
}
