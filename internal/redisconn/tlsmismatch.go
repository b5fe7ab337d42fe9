package redisconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// ErrTLSMismatch is a REDIS_URL whose scheme does not match what the server speaks: redis:// (plain)
// to a server that speaks only TLS, or rediss:// (TLS) to a plain one. Retrying cannot help.
var ErrTLSMismatch = errors.New("redisconn: TLS mismatch")

// probeTimeout bounds one probe of the other protocol.
const probeTimeout = 2 * time.Second

// TLSMismatch looks at why the first address of the target did not answer: after a connection error
// (a reset right after a plain command, a TLS handshake that got no TLS answer, a reply that is not
// the Redis protocol) it asks the server in the other protocol. It returns an error wrapping
// ErrTLSMismatch, with a hint saying which side speaks TLS, when the server answers that one; nil when
// it does not (a server down or starting, a network problem) or when err cannot be a mismatch.
func (t *Target) TLSMismatch(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, syscall.ECONNREFUSED) || Classify(err) != Transient || IsAuthError(err) || IsCertificateError(err) {
		return nil
	}
	addr, usesTLS := t.firstAddr()
	if addr == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if usesTLS {
		if speaksPlainRedis(ctx, addr) {
			return fmt.Errorf("%w: REDIS_URL is rediss:// (TLS) but the server at %s answers plain Redis, not TLS: use redis://, or enable TLS on the server", ErrTLSMismatch, addr)
		}
		return nil
	}
	if speaksTLS(ctx, addr) {
		return fmt.Errorf("%w: REDIS_URL is redis:// (plain) but the server at %s speaks only TLS: use rediss:// (and REDIS_CA_FILE for a private CA)", ErrTLSMismatch, addr)
	}
	return nil
}

// firstAddr is the first TCP address the gate dials and whether it dials it over TLS.
func (t *Target) firstAddr() (string, bool) {
	switch {
	case t.standalone != nil && t.standalone.Network != "unix":
		return t.standalone.Addr, t.standalone.TLSConfig != nil
	case t.failover != nil && len(t.failover.SentinelAddrs) > 0:
		return t.failover.SentinelAddrs[0], t.failover.TLSConfig != nil
	case t.cluster != nil && len(t.cluster.Addrs) > 0:
		return t.cluster.Addrs[0], t.cluster.TLSConfig != nil
	}
	return "", false
}

// speaksTLS reports whether a TLS handshake with addr gets a TLS server's answer. Only the handshake
// is made, nothing is sent after it, and its certificate is not judged (it is a probe, not a session):
// a certificate error still means the server speaks TLS.
func speaksTLS(ctx context.Context, addr string) bool {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a probe: nothing is sent
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = c.Close()
		return true
	}
	var alert tls.AlertError
	return errors.As(err, &alert) // a TLS server refusing our handshake (say, no client certificate)
}

// speaksPlainRedis reports whether addr answers a plain PING the way Redis does (+PONG, or an error
// such as -NOAUTH).
func speaksPlainRedis(ctx context.Context, addr string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	reply := buf[:n]
	return bytes.HasPrefix(reply, []byte("+PONG")) || bytes.HasPrefix(reply, []byte("-NOAUTH")) || bytes.HasPrefix(reply, []byte("-ERR")) ||
		bytes.HasPrefix(reply, []byte("-WRONGPASS")) || bytes.HasPrefix(reply, []byte("-LOADING"))
}
