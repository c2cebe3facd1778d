package gateway

// UsersHeld returns the number of users whose per-user limits the server
// holds (tests check that none stays after every session ended).
func (s *Server) UsersHeld() int { return s.limits.len() }
