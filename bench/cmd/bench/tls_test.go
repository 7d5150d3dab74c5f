package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/consortium-dev/consortium/bench"
	"github.com/consortium-dev/consortium/upstream"
)

// TestHTTP2Upstream checks the streams scenario's upstream as the proxy
// sees it: the fake over HTTPS with writeCert's certificate, trusted as
// SSL_CERT_FILE would make it trusted, answers the proxy's transport in
// HTTP/2, streams in flight share one connection, and tcpConnsTo counts
// that connection.
func TestHTTP2Upstream(t *testing.T) {
	certFile, keyFile, err := writeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &bench.Fake{Chunks: 3}}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, certFile, keyFile) }()
	defer func() {
		srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("serve: %v", err)
		}
	}()

	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block in", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	transport := upstream.NewTransport()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	addr := ln.Addr().String()
	url := "https://" + addr + "/v1/chat/completions"
	resp, err := client.Post(url, "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("%s, body %q", resp.Proto, body)
	}

	// Streams open at once, each read to its first chunk: one connection.
	const n = 5
	var wg sync.WaitGroup
	first := make(chan struct{}, n)
	release := make(chan struct{})
	for range n {
		wg.Go(func() {
			resp, err := client.Post(url, "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Error(err)
				first <- struct{}{}
				return
			}
			defer resp.Body.Close()
			resp.Body.Read(make([]byte, 64))
			first <- struct{}{}
			<-release
			io.Copy(io.Discard, resp.Body)
		})
	}
	for range n {
		<-first
	}
	conns, err := tcpConnsTo(os.Getpid(), addr)
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if conns != 1 {
		t.Errorf("%d streams held %d connections to the upstream, want 1", n, conns)
	}
}
