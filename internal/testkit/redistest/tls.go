package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TLSFiles are the PEM files of a private CA, a server certificate for 127.0.0.1 signed by it, and a
// client certificate signed by it. They are generated at run time; no key is ever committed.
type TLSFiles struct {
	CA         string
	ServerCert string
	ServerKey  string
	ClientCert string
	ClientKey  string
}

// WriteTLSFiles generates a private CA, a server certificate (IP SAN 127.0.0.1) and a client
// certificate into dir.
func WriteTLSFiles(t testing.TB, dir string) TLSFiles {
	t.Helper()
	f := TLSFiles{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "peerdb-maintenance test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER := sign(t, caTmpl, caTmpl, caKey, caKey)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parse CA certificate: %v", err)
	}
	writePEM(t, f.CA, "CERTIFICATE", caDER)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, certPath, keyPath string) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		writePEM(t, certPath, "CERTIFICATE", sign(t, tmpl, caCert, key, caKey))
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatalf("encode key: %v", err)
		}
		writePEM(t, keyPath, "PRIVATE KEY", der)
	}
	leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, f.ServerCert, f.ServerKey)
	leaf(3, "peerdb-maintenance test client", x509.ExtKeyUsageClientAuth, f.ClientCert, f.ClientKey)
	return f
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", tmpl.Subject.CommonName, err)
	}
	return der
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// StartTLS runs a redis-server that speaks only TLS, on a free loopback port, with the server
// certificate of files. With clientAuth it refuses clients without a certificate signed by the CA.
// It waits until the server answers a PING over TLS, restarts like any Server, and is killed when the
// test ends.
func StartTLS(t testing.TB, files TLSFiles, clientAuth bool, extra ...string) *Server {
	t.Helper()
	Binary(t)
	port := FreePort(t)
	s := &Server{t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
	auth := "no"
	if clientAuth {
		auth = "yes"
	}
	s.args = append([]string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", files.ServerCert, "--tls-key-file", files.ServerKey, "--tls-ca-cert-file", files.CA,
		"--tls-auth-clients", auth, "--save", "", "--appendonly", "no",
		"--dir", s.Dir, "--logfile", filepath.Join(s.Dir, "redis.log")}, extra...)
	s.dial = tlsDialer(t, s.Addr, files)
	t.Cleanup(s.Kill)
	s.start()
	return s
}

// tlsDialer connects over TLS, presenting the client certificate, for the readiness check.
func tlsDialer(t testing.TB, addr string, files TLSFiles) func() (net.Conn, error) {
	t.Helper()
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatalf("load client certificate: %v", err)
	}
	cfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return func() (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
	}
}
