package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/wire"
)

// deliverFrom delivers from r's cursor until ctx ends or r is lost.
//
// The cursor is recorded behind the deliveries, one batch deep: batch k+1 is sent while the
// cursor past batch k is being written (a commit waits for a disk or for JetStream), and batch
// k+2 only once that write is done. A crash then sends again at most the two batches after the
// durable cursor; the order never changes, since a batch is sent only after the one before it
// was taken.
func (w *Webhook) deliverFrom(ctx context.Context, r reader, watch *eventlog.Watch) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if lost := r.lost(); lost != nil {
		go func() {
			select {
			case <-lost:
				w.cfg.Logger.Warn("webhook lease lost: this node stops delivering it", "webhook", w.cfg.Name)
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	c := &committer{r: r, recorded: r.cursor()}
	defer c.wait()
	pos, failures := r.cursor(), 0
	for ctx.Err() == nil {
		batch, next, err := r.read(ctx, pos, w.cfg.Batch)
		if err == nil && next == pos {
			if err := c.catchUp(pos); errors.Is(err, eventlog.ErrLeaseLost) {
				return
			} else if err != nil {
				w.failed(fmt.Errorf("recording the cursor: %w", err))
				sleep(ctx, time.Second)
				continue
			}
			select { // caught up and recorded: wait for an append (or a minute, as a backstop)
			case <-watch.C():
			case <-ctx.Done():
			case <-time.After(time.Minute):
			}
			continue
		}
		if err == nil && len(batch) > 0 {
			err = w.deliver(ctx, batch)
		}
		if err == nil {
			if cerr := c.wait(); errors.Is(cerr, eventlog.ErrLeaseLost) {
				return
			} else if cerr != nil {
				w.cfg.Logger.Warn("webhook cursor not recorded; the next one covers it", "webhook", w.cfg.Name, "err", cerr)
			}
			pos, failures = next, 0
			c.start(pos)
			w.delivered(pos, len(batch))
			continue
		}
		if ctx.Err() != nil || errors.Is(err, eventlog.ErrClosed) {
			return
		}
		failures++
		w.failed(err)
		sleep(ctx, min(w.cfg.MaxBackoff, minBackoff<<min(failures, 16)))
	}
}

// committer records a webhook's cursor in the background, one write at a time. Its writes
// outlive the delivery's context: a receiver that took a batch should not get it again.
type committer struct {
	r        reader
	recorded string     // the cursor last recorded
	inFlight chan error // the write under way, nil when none
	pending  string     // what it writes
}

// start begins recording pos; the caller has waited for the write before.
func (c *committer) start(pos string) {
	c.inFlight, c.pending = make(chan error, 1), pos
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.inFlight <- c.r.commit(ctx, pos)
	}()
}

// wait waits for the write under way, if any, and returns its error.
func (c *committer) wait() error {
	if c.inFlight == nil {
		return nil
	}
	err := <-c.inFlight
	c.inFlight = nil
	if err == nil {
		c.recorded = c.pending
	}
	return err
}

// catchUp makes sure pos is recorded (a write may have failed): done once delivery has caught
// up, so that an idle webhook's durable cursor is where it stands.
func (c *committer) catchUp(pos string) error {
	if err := c.wait(); err != nil || c.recorded == pos {
		return err
	}
	c.start(pos)
	return c.wait()
}

// deliver posts one batch, signed; nil only for a 2xx answer.
func (w *Webhook) deliver(ctx context.Context, batch []eventlog.Event) error {
	body := Encode(w.cfg.Name, batch)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(hooks.SignatureHeader, hooks.Sign(w.cfg.Secret, time.Now(), body))
	res, err := w.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", res.Status)
	}
	return nil
}

// Encode is a batch's body: {"webhook":"<name>","events":[<event objects, as GET /v1/events
// prints them>]}.
func Encode(name string, batch []eventlog.Event) []byte {
	b := []byte(`{"webhook":`)
	b = appendQuoted(b, name)
	b = append(b, `,"events":[`...)
	for i := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		e := &batch[i]
		b = wire.AppendEventJSON(b, &wire.StoredEvent{ID: e.ID, Room: e.Room, Kind: e.Kind, User: e.User, Session: e.Session, Key: e.Key, Body: e.Body})
	}
	return append(b, "]}"...)
}

func appendQuoted(b []byte, s string) []byte {
	return append(append(append(b, '"'), s...), '"') // names are validated: nothing to escape
}
