package main

import (
	"fmt"
	"os"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
)

func token(args []string) int {
	c := newCommand("token", "Prints a signed HS256 token for a user, for tests, scripts and backend services.")
	secret := c.String("secret", "ROOMLOG_JWT_SECRET", "", "HS256 secret the server verifies with (required)")
	sub := c.String("sub", "ROOMLOG_TOKEN_SUB", "", "user id, the sub claim (required)")
	roomsFlag := c.String("rooms", "ROOMLOG_TOKEN_ROOMS", "", "comma-separated room patterns the user may join and publish to ('doc:*')")
	readRooms := c.String("read-rooms", "ROOMLOG_TOKEN_READ_ROOMS", "", "comma-separated room patterns the user may only join")
	snapshotRooms := c.String("snapshot-rooms", "ROOMLOG_TOKEN_SNAPSHOT_ROOMS", "", "comma-separated room patterns where the user may publish snapshots (with write permission there)")
	admin := c.Bool("admin", "ROOMLOG_TOKEN_ADMIN", false, "allow the history and audit HTTP API")
	ttl := c.Duration("ttl", "ROOMLOG_TOKEN_TTL", time.Hour, "how long the token is valid")
	issuer := c.String("issuer", "ROOMLOG_JWT_ISSUER", "", "iss claim")
	audience := c.String("audience", "ROOMLOG_JWT_AUDIENCE", "", "aud claim")
	if code, ok := c.parse(args); !ok {
		return code
	}
	switch {
	case *secret == "":
		fmt.Fprintln(os.Stderr, "roomlog token: --secret is required (the server's --jwt-secret)")
		return 2
	case len(*secret) < auth.MinSecretLength:
		fmt.Fprintf(os.Stderr, "roomlog token: --secret is %d bytes; the server takes secrets of %d or more\n", len(*secret), auth.MinSecretLength)
		return 2
	case *sub == "":
		fmt.Fprintln(os.Stderr, "roomlog token: --sub is required (the user id)")
		return 2
	case *ttl <= 0:
		fmt.Fprintln(os.Stderr, "roomlog token: --ttl must be positive")
		return 2
	}
	for flag, list := range map[string]string{"--rooms": *roomsFlag, "--read-rooms": *readRooms, "--snapshot-rooms": *snapshotRooms} {
		for _, p := range splitList(list) {
			if err := eventlog.ValidPattern(p); err != nil {
				fmt.Fprintf(os.Stderr, "roomlog token: %s: %v\n", flag, err)
				return 2
			}
		}
	}
	tok, err := auth.NewToken([]byte(*secret), auth.TokenSpec{
		Subject: *sub, Rooms: splitList(*roomsFlag), ReadRooms: splitList(*readRooms), SnapshotRooms: splitList(*snapshotRooms), Admin: *admin,
		TTL: *ttl, Issuer: *issuer, Audience: *audience,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "roomlog token: %v\n", err)
		return 1
	}
	fmt.Println(tok)
	return 0
}
