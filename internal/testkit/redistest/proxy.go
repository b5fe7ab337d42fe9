package redistest

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a server that can stop forwarding (Stall) and start again
// (Resume), like a network that silently drops traffic for a while: connections stay open, nothing
// arrives, and what was sent during the stall is delivered after it, as TCP retransmission would.
// DropReplies lets commands reach the server and loses its replies, so that a client cannot know
// whether a write happened; Resume then resets the connections that lost a reply.
type Proxy struct {
	// Addr is the proxy's own 127.0.0.1:port.
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	flowing chan struct{} // closed while forwarding; replaced by an open one during a stall
	stalled bool
	replies chan struct{} // the same for replies only (StallReplies)
	held    bool
	// dropping: replies are discarded (DropReplies); lossy: client connections that lost one.
	dropping bool
	lossy    map[net.Conn]struct{}
	// deafWord: a command (as RESP sends its name) after which a connection gets no reply (DeafAfter).
	deafWord []byte
	deaf     map[net.Conn]struct{}
	conns    map[net.Conn]struct{}
	accepted int // connections accepted so far
	closed   chan struct{}
	wg       sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards every connection to target (host:port).
// It is closed when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, flowing: make(chan struct{}), replies: make(chan struct{}),
		conns: map[net.Conn]struct{}{}, lossy: map[net.Conn]struct{}{}, deaf: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	close(p.flowing)
	close(p.replies)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Accepted returns how many connections the proxy has accepted: the connections its one client opened.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// URL returns redis://<proxy address>/0.
func (p *Proxy) URL() string { return fmt.Sprintf("redis://%s/0", p.Addr) }

// Stall stops forwarding in both directions. New connections are accepted but stalled too.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.flowing = make(chan struct{})
	}
}

// StallReplies holds the server's replies while commands still reach it: a slow reply, whose command
// has run although the client cannot know it.
func (p *Proxy) StallReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		p.held = true
		p.replies = make(chan struct{})
	}
}

// Resume forwards again, delivering what was held during a stall first, and closes the connections
// that lost a reply, as a client that saw a broken stream would.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.flowing)
	}
	if p.held {
		p.held = false
		close(p.replies)
	}
	p.dropping = false
	for c := range p.lossy {
		_ = c.Close()
	}
	clear(p.lossy)
}

// DropReplies forwards commands to the server but discards its replies, until Resume.
func (p *Proxy) DropReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropping = true
}

// DeafAfter makes every connection that sends the command (by name: "SUBSCRIBE" is not "PSUBSCRIBE")
// go silent from then on: the command and those after it reach the server, no reply comes back, and
// the connection stays open. The other connections work: one half-open connection, as a NAT or a
// proxy that lost its state leaves behind.
func (p *Proxy) DeafAfter(command string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deafWord = []byte(fmt.Sprintf("$%d\r\n%s\r\n", len(command), strings.ToUpper(command)))
}

// Deaf returns how many connections went silent after DeafAfter's command.
func (p *Proxy) Deaf() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.deaf)
}

// sent notes a chunk the client sent, before it is forwarded.
func (p *Proxy) sent(client net.Conn, chunk []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deafWord != nil && bytes.Contains(bytes.ToUpper(chunk), p.deafWord) {
		p.deaf[client] = struct{}{}
	}
}

// drop reports whether a reply for client must be discarded, and remembers that client lost one.
func (p *Proxy) drop(client net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dropping {
		p.lossy[client] = struct{}{}
	}
	_, deaf := p.deaf[client]
	return p.dropping || deaf
}

// Close stops listening and closes every connection. Closing twice does nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		p.mu.Unlock()
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		p.wg.Add(2)
		go p.pipe(server, client, false)
		go p.pipe(client, server, true)
	}
}

// track registers a connection pair; false when the proxy is already closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	default:
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies from src to dst, holding each chunk while the proxy is stalled. When src ends, dst is
// closed too (after the stall, so that a peer's close is not seen through a stalled network either).
func (p *Proxy) pipe(dst, src net.Conn, replies bool) {
	defer p.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		delete(p.lossy, dst)
		delete(p.lossy, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if !p.waitFlowing(replies) {
			return
		}
		if n > 0 && !replies {
			p.sent(src, buf[:n])
		}
		if n > 0 && !(replies && p.drop(dst)) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitFlowing blocks while the proxy is stalled (or, for replies, while they are held); false when
// it was closed meanwhile.
func (p *Proxy) waitFlowing(replies bool) bool {
	p.mu.Lock()
	flowing, held := p.flowing, p.replies
	p.mu.Unlock()
	if !replies {
		held = flowing
	}
	for _, ch := range []chan struct{}{flowing, held} {
		select {
		case <-ch:
		case <-p.closed:
			return false
		}
	}
	return true
}
