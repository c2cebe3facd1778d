package delivery

// Idle reports whether d is neither queued for a read nor being read (nor
// still attaching): no read of it is pending until something wakes it.
func (d *Device) Idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.queued
}
