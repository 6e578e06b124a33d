package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/roomlog/roomlog/webhooks"
)

// webhookFlags are serve's --webhook NAME=URL, --webhook-rooms NAME=PATTERNS and
// --webhook-kinds NAME=KINDS, each repeatable; ROOMLOG_WEBHOOK, ROOMLOG_WEBHOOK_ROOMS and
// ROOMLOG_WEBHOOK_KINDS give them as space-separated lists when no flag does.
type webhookFlags struct {
	urls, rooms, kinds listFlag
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func addWebhookFlags(c *command) *webhookFlags {
	f := &webhookFlags{}
	c.fs.Var(&f.urls, "webhook", "NAME=URL: deliver the log's events to URL, in order, in signed batches (with --hook-secret); repeatable (env ROOMLOG_WEBHOOK, space-separated)")
	c.fs.Var(&f.rooms, "webhook-rooms", "NAME=PATTERNS: the comma-separated room patterns webhook NAME delivers (default: every room); repeatable (env ROOMLOG_WEBHOOK_ROOMS)")
	c.fs.Var(&f.kinds, "webhook-kinds", "NAME=KINDS: the comma-separated kinds webhook NAME delivers (default: every kind); repeatable (env ROOMLOG_WEBHOOK_KINDS)")
	return f
}

// configs reads the flags (or their variables) into the webhooks' configurations, signed with
// secret.
func (f *webhookFlags) configs(secret string) ([]webhooks.Config, error) {
	for _, l := range []struct {
		flag *listFlag
		env  string
	}{{&f.urls, "ROOMLOG_WEBHOOK"}, {&f.rooms, "ROOMLOG_WEBHOOK_ROOMS"}, {&f.kinds, "ROOMLOG_WEBHOOK_KINDS"}} {
		if len(*l.flag) == 0 {
			*l.flag = strings.Fields(os.Getenv(l.env))
		}
	}
	var out []webhooks.Config
	index := map[string]int{}
	for _, v := range f.urls {
		name, url, err := webhooks.ParseFlag(v)
		if err != nil {
			return nil, fmt.Errorf("--webhook %q: %v", v, err)
		}
		if _, dup := index[name]; dup {
			return nil, fmt.Errorf("--webhook: %q is named twice", name)
		}
		index[name] = len(out)
		out = append(out, webhooks.Config{Name: name, URL: url, Secret: []byte(secret)})
	}
	if len(out) > 0 && secret == "" {
		return nil, errors.New("--webhook needs --hook-secret: every batch is signed with it")
	}
	for _, l := range []struct {
		name string
		vals listFlag
		set  func(c *webhooks.Config, list []string)
	}{
		{"--webhook-rooms", f.rooms, func(c *webhooks.Config, list []string) { c.Rooms = list }},
		{"--webhook-kinds", f.kinds, func(c *webhooks.Config, list []string) { c.Kinds = list }},
	} {
		for _, v := range l.vals {
			name, list, err := webhooks.ParseFlag(v)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %v", l.name, v, err)
			}
			i, ok := index[name]
			if !ok {
				return nil, fmt.Errorf("%s: no --webhook named %q", l.name, name)
			}
			l.set(&out[i], splitList(list))
		}
	}
	for _, c := range out {
		if _, err := webhooks.New(c, nil); err != nil {
			return nil, fmt.Errorf("--webhook: %v", err)
		}
	}
	return out, nil
}
