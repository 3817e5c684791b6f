package plugin

import "sync"

// Connection is what the plugin knows of the runtime it serves, for
// whoever asks how it is doing (nriguard status).
type Connection struct {
	Connected        bool
	Runtime, Version string // as the runtime told them at Configure
	Path             Path
}

// connection is the plugin's Connection, set from the stub's goroutines
// and read from others.
type connection struct {
	mu sync.Mutex
	c  Connection
}

func (c *connection) set(v Connection) {
	c.mu.Lock()
	c.c = v
	c.mu.Unlock()
}

func (c *connection) closed() {
	c.mu.Lock()
	c.c.Connected = false
	c.mu.Unlock()
}

// Connection says which runtime the plugin serves, on which path, and
// whether it is connected now.
func (p *Plugin) Connection() Connection {
	p.conn.mu.Lock()
	defer p.conn.mu.Unlock()
	return p.conn.c
}
