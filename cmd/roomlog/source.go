package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/roomlog/roomlog/eventlog"
)

// source is where a read-only command reads: a data file offline, or a live server through its
// admin HTTP API.
type source struct {
	data, server, token *string
}

func addSource(c *command) source {
	return source{
		data:   c.String("data", "ROOMLOG_DATA", "", "data file to read offline (read-only; not while a server holds it)"),
		server: c.String("server", "ROOMLOG_SERVER", "", "server URL to read through its HTTP API (http://127.0.0.1:7070)"),
		token:  c.String("token", "ROOMLOG_TOKEN", "", "admin token for --server"),
	}
}

// check says which of the two was chosen, or what is wrong.
func (s source) check() (online bool, err error) {
	switch {
	case *s.data != "" && *s.server != "":
		return false, errors.New("give --data or --server, not both")
	case *s.data == "" && *s.server == "":
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

// open opens the data file read-only; its error says what to do instead.
func (s source) open() (*eventlog.BoltLog, error) {
	l, err := eventlog.Open(*s.data, eventlog.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s does not exist", *s.data)
	case errors.Is(err, eventlog.ErrLocked):
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
