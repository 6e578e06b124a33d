package main

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
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// writeCert writes a new self-signed certificate for 127.0.0.1 and its key to the two files, and
// returns a pool trusting it alone.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.CertPool {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "roomlog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	// Written beside and renamed, as certbot and mounted secrets replace them.
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestTLSReloadsCertificates: with --tls-cert and --tls-key the server speaks WSS; when the files
// are replaced (a renewal), new connections get the new certificate without a restart, and a
// connection made before goes on.
func TestTLSReloadsCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	p := startProc(t, filepath.Join(dir, "tls.db"), "--tls-cert", certFile, "--tls-key", keyFile)
	hello := func(roots *x509.CertPool) (*websocket.Conn, error) {
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: 5 * time.Second}
		ws, _, err := d.Dial("wss://"+p.addr+"/v1/ws", nil)
		if err != nil {
			return nil, err
		}
		ws.WriteJSON(map[string]any{"type": "hello", "token": crashToken(t, "tls", false), "session": "s"})
		var f map[string]any
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := ws.ReadJSON(&f); err != nil || f["type"] != "welcome" {
			ws.Close()
			t.Fatalf("hello over WSS: %v %v", f, err)
		}
		return ws, nil
	}
	before, err := hello(first)
	if err != nil {
		t.Fatalf("WSS with the first certificate: %v", err)
	}
	defer before.Close()
	if ws, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/v1/ws", nil); err == nil {
		ws.Close()
		t.Fatalf("plain ws:// was served with --tls-cert")
	}

	second := writeCert(t, certFile, keyFile, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, err := hello(second)
		if err == nil {
			ws.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was never served: %v\n%s", err, p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := hello(first); err == nil {
		t.Fatalf("the replaced certificate is still served")
	}
	before.WriteJSON(map[string]any{"type": "ping"})
	var f map[string]any
	if err := before.ReadJSON(&f); err != nil || f["type"] != "pong" {
		t.Fatalf("the connection made before the renewal: %v %v", f, err)
	}
}
