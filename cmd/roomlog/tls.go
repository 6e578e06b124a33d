package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate of a key pair of files and loads them again when either
// changes (certificates are renewed every few weeks, by certbot or a mounted secret), checking
// at most once a second, at a handshake. A pair that does not load keeps the one in use, and
// the failure is logged once per change.
type certReloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string    // the files' sizes and modification times when cert was loaded (or refused)
	checked time.Time // when the files were last looked at
}

func newCertReloader(certFile, keyFile string, logger *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, logger: logger}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
	return r, nil
}

// fileStamp says what the two files are now: when either is rewritten, it changes.
func (r *certReloader) fileStamp() (string, error) {
	var stamp string
	for _, path := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d.%d;", st.Size(), st.ModTime().UnixNano())
	}
	return stamp, nil
}

// get implements tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < time.Second {
		return r.cert, nil
	}
	r.checked = time.Now()
	stamp, err := r.fileStamp()
	if err != nil || stamp == r.stamp {
		return r.cert, nil // a file being replaced: keep serving the one in use
	}
	r.stamp = stamp
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.logger.Warn("the TLS certificate files changed but do not load; keeping the certificate in use", "cert", r.certFile, "key", r.keyFile, "err", err)
		return r.cert, nil
	}
	r.cert = &cert
	r.logger.Info("TLS certificate reloaded", "cert", r.certFile)
	return r.cert, nil
}
