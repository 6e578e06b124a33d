// Package rooms owns room membership, presence state, authorisation of room actions from token
// claims, and fan-out of new events to the local members. It speaks no wire format.
package rooms
