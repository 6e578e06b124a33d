// Package rooms owns room membership, presence state, authorisation of room actions from token
// claims (Hub.Publish is the one way clients publish), and fan-out of new events to the local
// members. It speaks no wire format.
package rooms
