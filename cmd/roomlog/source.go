package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
)

// source is where a read-only command reads: a data file offline, a live server through its
// admin HTTP API, or, for the audit commands, a JetStream log directly (withNATS).
type source struct {
	data, server, token *string
	nats, natsStream    *string // nil unless withNATS
}

func addSource(c *command) source {
	return source{
		data:   c.String("data", "ROOMLOG_DATA", "", "data file to read offline (read-only; not while a server holds it)"),
		server: c.String("server", "ROOMLOG_SERVER", "", "server URL to read through its HTTP API (http://127.0.0.1:7070)"),
		token:  c.String("token", "ROOMLOG_TOKEN", "", "admin token for --server"),
	}
}

// withNATS adds --nats and --nats-stream: the log of nodes on JetStream, read without a node.
func (s source) withNATS(c *command) source {
	s.nats = c.String("nats", "ROOMLOG_NATS", "", "comma-separated NATS server URLs: read the JetStream log of nodes run with --nats, read-only")
	s.natsStream = c.String("nats-stream", "ROOMLOG_NATS_STREAM", jetstream.DefaultStream, "with --nats: the log's stream")
	return s
}

func (s source) natsGiven() bool { return s.nats != nil && *s.nats != "" }

// check says which source was chosen (online: the HTTP API), or what is wrong.
func (s source) check() (online bool, err error) {
	given := 0
	for _, set := range []bool{*s.data != "", *s.server != "", s.natsGiven()} {
		if set {
			given++
		}
	}
	switch {
	case given > 1 && s.nats != nil:
		return false, errors.New("give one of --data, --server and --nats, not several")
	case given > 1:
		return false, errors.New("give --data or --server, not both")
	case given == 0 && s.nats != nil:
		return false, errors.New("give --data FILE (offline), --server URL --token JWT (online) or --nats URL (a JetStream log)")
	case given == 0:
		return false, errors.New("give --data FILE (offline) or --server URL --token JWT (online)")
	case *s.server != "" && *s.token == "":
		return false, errors.New("--server needs --token (an admin token)")
	case *s.server != "":
		u, err := url.Parse(*s.server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return false, fmt.Errorf("--server %q is not an http(s) URL", *s.server)
		}
		return true, nil
	}
	return false, nil
}

// auditableLog is what the audit commands read: the data file, or a JetStream log.
type auditableLog interface {
	eventlog.Log
	eventlog.Auditor
	eventlog.SessionIndex
}

// openAudit opens the offline source: the JetStream log with --nats, else the data file.
func (s source) openAudit() (auditableLog, error) {
	if !s.natsGiven() {
		return s.open()
	}
	nc, err := nats.Connect(*s.nats, nats.Name("roomlog audit "+version))
	if err != nil {
		return nil, fmt.Errorf("--nats %s: %v", *s.nats, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := jetstream.Open(ctx, nc, jetstream.Options{Stream: *s.natsStream, ReadOnly: true})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("--nats %s: %v", *s.nats, err)
	}
	return natsAudit{l, nc}, nil
}

// natsAudit is a read-only JetStream log that owns its connection.
type natsAudit struct {
	*jetstream.Log
	nc *nats.Conn
}

func (a natsAudit) Close() error {
	err := a.Log.Close()
	a.nc.Close()
	return err
}

// open opens the data file read-only; its error says what to do instead.
func (s source) open() (*boltlog.Log, error) {
	l, err := boltlog.Open(*s.data, boltlog.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s does not exist", *s.data)
	case errors.Is(err, boltlog.ErrLocked):
		return nil, fmt.Errorf("%s is in use by a running server: read it through the server with --server URL --token JWT, or take a copy with 'roomlog backup --server URL --token JWT --out FILE'", *s.data)
	}
	return l, err
}

// get calls the server's API and returns the response body, or an error carrying the server's
// message.
func (s source) get(path string, q url.Values) (io.ReadCloser, error) {
	return s.request("GET", path, q, nil)
}

// request is get with any method and a body.
func (s source) request(method, path string, q url.Values, body io.Reader) (io.ReadCloser, error) {
	u := strings.TrimRight(*s.server, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+*s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the server: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("the server refused: %s (%s)", e.Error.Message, e.Error.Code)
		}
		return nil, fmt.Errorf("the server answered %s", resp.Status)
	}
	return resp.Body, nil
}

// isTerminal reports whether f is a terminal (for choosing output formats and progress).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// fail prints one line for the command and returns exit code 1.
func fail(cmd string, err error) int {
	fmt.Fprintf(os.Stderr, "roomlog %s: %v\n", cmd, err)
	return 1
}
