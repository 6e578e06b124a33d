// Package rooms owns room membership, presence state, the decision on every room action
// (Hub.Authorize: the token's grants, or the application's Authorizer; Hub.Publish is the one way
// clients publish), and fan-out of new events to the local members. It speaks no wire format.
package rooms
