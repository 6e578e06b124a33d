package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/roomlog/roomlog/webhooks"
)

// webhooksCmd prints where each webhook of a running server stands (GET /v1/webhooks).
func webhooksCmd(args []string) int {
	c := newCommand("webhooks", "Prints each webhook of a running server: its cursor, the events pending and the last error.")
	src := addSource(c)
	if code, ok := c.parse(args); !ok {
		return code
	}
	online, err := src.check()
	if err == nil && !online {
		err = errors.New("webhooks are delivered by a running server: give --server URL --token JWT")
	}
	if err != nil {
		return usageError("webhooks", err)
	}
	body, err := src.get("/v1/webhooks", nil)
	if err != nil {
		return fail("webhooks", err)
	}
	defer body.Close()
	var answer struct{ Webhooks []webhooks.Status }
	if err := json.NewDecoder(body).Decode(&answer); err != nil {
		return fail("webhooks", fmt.Errorf("the server's answer: %v", err))
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tNODE\tPENDING\tLAG\tDELIVERED\tCURSOR\tLAST DELIVERY\tLAST ERROR")
	for _, s := range answer.Webhooks {
		last := "-"
		if !s.LastDelivery.IsZero() {
			last = s.LastDelivery.Format("2006-01-02T15:04:05Z")
		}
		lag := (time.Duration(s.LagMS) * time.Millisecond).Round(time.Millisecond).String()
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", s.Name, orDash(s.Node), s.Pending, lag, s.Delivered, orDash(s.Cursor), last, orDash(s.LastError))
	}
	if err := w.Flush(); err != nil {
		return fail("webhooks", err)
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
