// Package replay owns catching a subscriber up from a cursor and handing it over to live events
// without gap or duplicate, and the audit reader (filters, time ranges, all-rooms order, hash-chain
// verification). It holds no connections.
package replay
