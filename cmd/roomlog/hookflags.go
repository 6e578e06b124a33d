package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/transport"
)

// hookFlags are serve's flags of the application's join hook (package hooks).
type hookFlags struct {
	url, secret, rooms *string
	timeout            *time.Duration
	publish            *bool
	userRate           *float64
}

func addHookFlags(c *command) *hookFlags {
	return &hookFlags{
		url:      c.String("hook-url", "ROOMLOG_HOOK_URL", "", "the application's URL that decides joins in --hook-rooms (a signed POST per decision); empty: off"),
		secret:   c.String("hook-secret", "ROOMLOG_HOOK_SECRET", "", "the secret that signs hook requests and webhook batches (at least 32 bytes); required with --hook-url or --webhook"),
		rooms:    c.String("hook-rooms", "ROOMLOG_HOOK_ROOMS", "*", "comma-separated room patterns the hook decides; the token's room claims decide the others"),
		timeout:  c.Duration("hook-timeout", "ROOMLOG_HOOK_TIMEOUT", hooks.DefaultTimeout, "how long a hook request may take; past it the action is refused as unavailable"),
		userRate: c.Float("hook-user-rate", "ROOMLOG_HOOK_USER_RATE", hooks.DefaultUserRate, "hook requests one user may cause per second (bursts of twice as many; reused decisions are free); past it the action is unavailable"),
		publish:  c.Bool("hook-publish", "ROOMLOG_HOOK_PUBLISH", false, "also ask the hook about every event published in --hook-rooms, before it is appended"),
	}
}

// config is the hook's configuration, nil without --hook-url; its Observe is left to the server.
// withWebhooks says whether --webhook was given (the secret signs their batches too).
func (f *hookFlags) config(withWebhooks bool) (*hooks.Config, error) {
	if *f.url == "" {
		switch {
		case *f.publish:
			return nil, errors.New("--hook-publish needs --hook-url")
		case *f.secret != "" && !withWebhooks:
			return nil, errors.New("--hook-secret needs --hook-url or --webhook")
		}
		return nil, nil
	}
	if *f.timeout <= 0 || *f.userRate <= 0 {
		return nil, errors.New("--hook-timeout and --hook-user-rate must be positive")
	}
	cfg := &hooks.Config{URL: *f.url, Secret: []byte(*f.secret), Timeout: *f.timeout, Rooms: splitList(*f.rooms), Publish: *f.publish, UserRate: *f.userRate}
	if _, err := hooks.New(*cfg); err != nil { // checked here, so a bad flag is a usage error
		return nil, fmt.Errorf("--hook-url, --hook-secret or --hook-rooms: %v", err)
	}
	return cfg, nil
}

// hookAuthorizer is the hub's Authorizer for cfg.Hook, reporting to metrics; nil without a hook.
func hookAuthorizer(cfg serveConfig, metrics *transport.Metrics) (*hooks.Authorizer, error) {
	if cfg.Hook == nil {
		return nil, nil
	}
	hc := *cfg.Hook
	hc.Observe = metrics.ObserveHook
	return hooks.New(hc)
}
