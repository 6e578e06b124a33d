// Package web holds what roomlog serve serves to browsers: the collaborative editor page at /
// and the audit page at /audit, built from web/editor (CodeMirror 6 and Yjs on @roomlog/client, in web/client) by
// `npm ci && npm run build` in this directory. The built files in editor/dist are committed, so
// that `go run ./cmd/roomlog serve` needs no npm; .ci/run rebuilds them and fails when they
// differ from what is committed.
package web

import (
	"embed"
	"io/fs"
)

//go:embed editor/dist
var dist embed.FS

// Editor is the pages and their assets: index.html, audit.html and assets/.
func Editor() fs.FS {
	sub, err := fs.Sub(dist, "editor/dist")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}
