// Package gateway holds client connections: it serves the mpim client
// protocol (proto/mpim/v1/client.proto, docs/protocol.md) over WebSocket,
// turns requests into commands of the write side (package command) and
// queries of the read side (package query, over the MySQL and Redis read
// models), and pushes each
// authenticated device's inbox through the delivery Hub.
//
// A Server accepts connections on Handler (GET /ws); each connection is a
// session that answers every request with exactly one Response, in order,
// and writes responses, pushes and signals from one send queue bounded in
// frames and bytes: while its bytes exceed a budget the client's requests
// are not read, and a client that takes it over a hard bound, or does not
// drain it in time, is disconnected (1008), so memory never grows without
// bound (outbox.go). Frames are encoded by package proto/frame, in binary protobuf or
// protobuf JSON as the negotiated subprotocol says.
//
// Accounts (registration, logins, tokens, password hashing and login
// throttling) are package gateway/accounts; the gateway turns the account
// and session requests into its calls and closes the connections of the
// devices it logs out.
//
// Protection: a frame size limit (close 1009), per-connection and per-user
// token buckets (rate_limited errors) from which history and conversations
// requests take tokens in proportion to their page, a bound on a user's
// heavy queries in flight, a byte cap per history page, an authentication
// timeout, an idle
// timeout, and error responses for undecodable or unknown frames, none of
// which disturbs other connections. Every error a client sees carries a
// stable code from one table (errorCodes).
//
// Dispatcher is the HTTP handler that hands clients the least-loaded
// gateway; a Server reports its load through a LoadReporter.
package gateway
