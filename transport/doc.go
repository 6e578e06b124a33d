// Package transport owns the HTTP and WebSocket server: frame codecs (JSON, MessagePack), the
// handshake (tokens are checked by package auth), heartbeats, send queues and back-pressure, rate limits and the
// HTTP API. It decides neither durability nor ordering.
//
// gorilla/websocket does the opening handshake; after it the package reads client frames itself
// (wsio.Reader.go, the server's half of RFC 6455) and writes whole frames through wsio.CorkConn, many per
// system call. A connection runs goroutines only while it has work: on Linux one epoll poller
// (poller_linux.go) waits for every idle connection, so an idle connection is its socket and a few
// hundred bytes of state (Config.NoPoller, and other platforms, read with a goroutine each).
package transport
