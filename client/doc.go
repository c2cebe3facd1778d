// Package client speaks the mpim client protocol (docs/protocol.md) over
// WebSocket, for every Go caller: the mpimctl chat, the mpim-bench load
// generator, the end-to-end tests, and any Go program that talks to a
// gateway.
//
// There are two levels.
//
// A Conn is one WebSocket connection. Dial negotiates the subprotocol
// (mpim.v1.proto by default, mpim.v1.json on request) and starts one reader
// goroutine. Requests carry ids: Call and Request send a request with a
// fresh id and wait for the response with that id; Go sends one and hands
// its response to a callback, without a goroutine of its own, for callers
// that keep many requests in flight. A connection has one writer at a
// time: frames sent while another is being written are queued (bounded)
// and leave right after it, together, in one write system call and in the
// order they were sent; nothing waits for a timer. Everything else the server sends
// (pushes, signals, sync requests, goaways) is delivered in arrival order,
// either to Options.OnFrame on the reader goroutine or through Next from a
// bounded queue: when the queue is full the reader stops reading until Next
// takes a frame, and the server's own limits then apply (it closes a
// connection that does not read with 1008). When the server closes the
// connection, Err says why; a status the protocol defines comes back as a
// *CloseError that matches ErrReplaced (4001), ErrLoggedOut (4003) or
// ErrPolicy (1008) with errors.Is.
//
// A Session is a device that stays connected: it logs in (or resumes with a
// token), acknowledges every push once its handler has seen it, pings at the
// heartbeat the server asks for, and when the connection drops it dials
// again with backoff and resumes with its token, so that the server delivers
// from the last acknowledged push on. It stops for good, with the error in
// Err, when reconnecting cannot help: the device was replaced by another
// connection of it, logged out elsewhere, or its password no longer works.
//
// Conn and Session are safe for concurrent use by multiple goroutines.
// Every blocking call takes a context and returns when it ends.
package client
