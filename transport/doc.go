// Package transport owns the HTTP and WebSocket server: frame codecs (JSON, MessagePack), the
// handshake and JWT verification, heartbeats, send queues and back-pressure, rate limits and the
// HTTP API. It decides neither durability nor ordering.
package transport
