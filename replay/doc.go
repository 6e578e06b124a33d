// Package replay owns catching a subscriber up from a cursor and handing it over to live events
// without gap or duplicate: Resume, the one entry point of a join, chooses where a stream starts
// (the client's cursor, else the session's recorded one, else the head), flags unknown cursors and
// undoes a join that fails half-way; Stream then serves it. It also holds the audit reader
// (filters, time ranges, all-rooms order). It holds no connections.
package replay
