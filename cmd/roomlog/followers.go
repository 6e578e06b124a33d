package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/roomlog/roomlog/actions"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/revocation"
	"github.com/roomlog/roomlog/transport"
	"github.com/roomlog/roomlog/webhooks"
)

// newServer makes the transport server on store, with what follows the log beside it: the
// token revocations (read before serving, and followed, since other nodes add to them), the
// actions on live sessions other nodes take, and the webhooks.
func newServer(ctx context.Context, cfg serveConfig, store *storage, verifier *auth.Verifier, metrics *transport.Metrics, logger *slog.Logger) (*transport.Server, error) {
	var server atomic.Pointer[transport.Server] // set once made: what the followers act on
	var err error
	store.revocations, err = revocation.Open(ctx, store.log, cmp.Or(cfg.Auth.MaxTTL, auth.DefaultMaxTTL), func() {
		if s := server.Load(); s != nil {
			s.RecheckTokens() // close the connections of tokens revoked through another node
		}
	})
	if err != nil {
		return nil, err
	}
	verifier.SetRevocations(store.revocations)
	store.actions, err = actions.Follow(ctx, store.log, func(a actions.Action) {
		if s := server.Load(); s != nil {
			s.ApplyAction(a)
		}
	}, logger)
	if err != nil {
		return nil, err
	}
	tc := cfg.transportConfig(store.hub, verifier, metrics, logger)
	tc.Revocations, tc.Actions = store.revocations, store.actions
	if tc.Webhooks, err = startWebhooks(ctx, cfg.Webhooks, store, logger); err != nil {
		return nil, err
	}
	srv, err := transport.New(tc)
	if err != nil {
		return nil, err
	}
	server.Store(srv)
	return srv, nil
}

// startWebhooks starts delivering each webhook until ctx ends; the storage waits for them before
// it closes the log.
func startWebhooks(ctx context.Context, cfgs []webhooks.Config, store *storage, logger *slog.Logger) ([]*webhooks.Webhook, error) {
	st, ok := store.log.(webhooks.Store)
	if len(cfgs) > 0 && !ok {
		return nil, errors.New("--webhook: this log cannot deliver webhooks")
	}
	var out []*webhooks.Webhook
	wctx, cancel := context.WithCancel(ctx)
	for _, c := range cfgs {
		c.Logger = logger
		w, err := webhooks.New(c, st)
		if err != nil {
			cancel()
			return nil, err
		}
		out = append(out, w)
		store.webhooks.Go(func() { w.Run(wctx) })
	}
	store.stopWebhooks = cancel
	return out, nil
}
