package jetstream

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/roomlog/roomlog/eventlog"
)

// Headers of a stored event.
const (
	hdrID    = "Rl-Id"
	hdrCount = "Rl-N"
	hdrHash  = "Rl-Hash" // the chain hash, hex: a node learns a room's head from the headers alone
)

// maxGetBytes bounds the bytes of one batched direct get.
const maxGetBytes = 8 << 20

// stored is a message of the stream as a get returns it.
type stored struct {
	seq  uint64
	subj string
	hdr  nats.Header
	data []byte
	time time.Time // when the server stored it; set by leader gets only
}

// getRequest is JetStream's message get request (JSApiMsgGetRequest in nats-server).
type getRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	LastFor   string   `json:"last_by_subj,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MaxBytes  int      `json:"max_bytes,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
	UpToSeq   uint64   `json:"up_to_seq,omitempty"`
}

// errStatus is a direct get answered with a status other than found.
type errStatus struct{ status, what string }

func (e *errStatus) Error() string { return "direct get: " + e.status + " " + e.what }

// direct runs a batched direct get and returns the messages it found, in sequence order; none
// (and no error) when nothing matched. Any replica may answer it. While the stream has no
// replica to answer (a leader election, a server restarting), it tries again for up to a second.
func (l *Log) direct(ctx context.Context, req getRequest) ([]stored, error) {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		out, err := l.directOnce(ctx, req)
		if !errors.Is(err, nats.ErrNoResponders) || wait > time.Second {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

func (l *Log) directOnce(ctx context.Context, req getRequest) ([]stored, error) {
	single := req.Batch == 0 && len(req.MultiLast) == 0 // answered by one message, without an end
	if !single {
		req.MaxBytes = maxGetBytes
	}
	body, _ := json.Marshal(req)
	q := l.answers.open(max(req.Batch, 1) + 2) // the messages, and the end of the batch
	defer q.close()
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+l.opts.Stream, q.reply, body); err != nil {
		return nil, err
	}
	var out []stored
	for {
		m, err := q.next(ctx)
		if err != nil {
			return nil, fmt.Errorf("direct get: %w", err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			switch m.Header.Get("Status") {
			case "503":
				return nil, fmt.Errorf("direct get: %w", nats.ErrNoResponders)
			case "204": // end of batch
				return out, nil
			case "404":
				return out, nil
			default:
				return nil, &errStatus{m.Header.Get("Status"), m.Header.Get("Description")}
			}
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("direct get: a message without its sequence")
		}
		out = append(out, stored{seq: seq, subj: m.Header.Get("Nats-Subject"), hdr: m.Header, data: m.Data})
		if single {
			return out, nil
		}
	}
}

// leader reads one message of the log's stream from its leader: never behind, unlike a
// replica. Nil when there is none.
func (l *Log) leader(ctx context.Context, req getRequest) (*stored, error) {
	return l.leaderOf(ctx, l.opts.Stream, req)
}

// leaderOf is leader on any stream (a bucket's is KV_<bucket>): a read that must see every
// write acked before it, which a direct get, answered by any replica, may not. A request the
// leader does not answer within leaderAttempt is sent again: while a new leader is elected, the
// request to the old one is lost, and the new one is there in a few seconds.
func (l *Log) leaderOf(ctx context.Context, stream string, req getRequest) (*stored, error) {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	body, _ := json.Marshal(req)
	for {
		attempt, done := context.WithTimeout(ctx, leaderAttempt)
		resp, err := l.nc.RequestWithContext(attempt, "$JS.API.STREAM.MSG.GET."+stream, body)
		done()
		switch {
		case err == nil:
			return decodeMsgGet(resp.Data)
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders):
			return nil, fmt.Errorf("message get: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("message get: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const leaderAttempt = 2 * time.Second

// decodeMsgGet decodes the answer to a message get.
func decodeMsgGet(data []byte) (*stored, error) {
	var r struct {
		Error   *apiError `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("message get: %w", err)
	}
	if r.Error != nil {
		if r.Error.ErrCode == 10037 { // no message found
			return nil, nil
		}
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, errors.New("message get: an empty answer")
	}
	m := &stored{seq: r.Message.Sequence, subj: r.Message.Subject, data: r.Message.Data, time: r.Message.Time}
	if len(r.Message.Header) > 0 {
		var err error
		if m.hdr, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return nil, fmt.Errorf("message get: %w", err)
		}
	}
	return m, nil
}

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     uint16 `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("jetstream: %s (%d/%d)", e.Description, e.Code, e.ErrCode)
}

// event decodes a stored event of room.
func (m *stored) event(room string) (eventlog.Event, error) {
	ev := eventlog.Event{Room: room}
	id, err := eventlog.ParseID(m.hdr.Get(hdrID))
	if err != nil || id.IsZero() {
		return ev, fmt.Errorf("%w: stream message %d of room %q has no event id", eventlog.ErrCorrupt, m.seq, room)
	}
	ev.ID = id
	if err := eventlog.DecodeRecord(&ev, m.data); err != nil {
		return ev, fmt.Errorf("%w: stream message %d (%s): %v", eventlog.ErrCorrupt, m.seq, id, err)
	}
	return ev, nil
}

// count is a stored event's position in its room.
func (m *stored) count() uint64 {
	n, _ := strconv.ParseUint(m.hdr.Get(hdrCount), 10, 64)
	return n
}

// idAndHash reads a stored event's id and chain hash from its headers.
func (m *stored) idAndHash() (eventlog.ID, [32]byte, bool) {
	var hash [32]byte
	id := m.id()
	n, err := hex.Decode(hash[:], []byte(m.hdr.Get(hdrHash)))
	return id, hash, err == nil && n == 32 && !id.IsZero()
}

// id is a stored event's id (zero when the header is missing).
func (m *stored) id() eventlog.ID {
	id, _ := eventlog.ParseID(m.hdr.Get(hdrID))
	return id
}
