package inbox

// RouteCacheSize returns the users the route cache holds and their
// estimated bytes.
func (p *Projector) RouteCacheSize() (int, int64) { return p.routes.size() }

// LastIDsSize returns the users whose last inbox id the projector remembers.
func (p *Projector) LastIDsSize() int { return p.last.size() }
