package jetstream

import (
	"context"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
)

// responses routes the answers of this node's direct gets, which may be many messages per
// request, through one subscription on a wildcard inbox (as nats.go routes single-answer
// requests), instead of a subscription per request.
type responses struct {
	prefix string // <inbox>. ; a request's answers come to prefix + its token
	sub    *nats.Subscription

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan *nats.Msg
}

func startResponses(nc *nats.Conn) (*responses, error) {
	r := &responses{prefix: nc.NewInbox() + ".", waiting: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(r.prefix+"*", r.dispatch)
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, 256<<20)
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	r.sub = sub
	return r, nil
}

func (r *responses) dispatch(m *nats.Msg) {
	r.mu.Lock()
	ch := r.waiting[m.Subject[len(r.prefix):]]
	r.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default: // more answers than asked for: not a direct get's
		}
	}
}

// request is one request's answers: up to max messages (the channel holds them all, so the
// dispatcher never waits for a reader).
type request struct {
	r     *responses
	token string
	reply string
	c     chan *nats.Msg
}

func (r *responses) open(max int) *request {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	q := &request{r: r, token: strconv.FormatUint(r.next, 36), c: make(chan *nats.Msg, max)}
	q.reply = r.prefix + q.token
	r.waiting[q.token] = q.c
	return q
}

// next waits for the request's next answer.
func (q *request) next(ctx context.Context) (*nats.Msg, error) {
	select {
	case m := <-q.c:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *request) close() {
	q.r.mu.Lock()
	delete(q.r.waiting, q.token)
	q.r.mu.Unlock()
}

func (r *responses) stop() { r.sub.Unsubscribe() }
