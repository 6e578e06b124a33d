package jetstream

// Kill stops the log as a node that died would: no more heartbeats, none signed off.
func (l *Log) Kill() { l.shutdown(false) }
