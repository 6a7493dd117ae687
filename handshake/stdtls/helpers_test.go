package stdtls

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// readRecord reads one whole TLS record from conn.
func readRecord(t testing.TB, conn net.Conn, timeout time.Duration) []byte {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(timeout))
	defer conn.SetReadDeadline(time.Time{})
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(conn, hdr); err != nil {
		t.Fatalf("reading a record header from the socket: %v", err)
	}
	rec := make([]byte, recordHeaderLen+int(binary.BigEndian.Uint16(hdr[3:5])))
	copy(rec, hdr)
	if _, err := io.ReadFull(conn, rec[recordHeaderLen:]); err != nil {
		t.Fatalf("reading a record body from the socket: %v", err)
	}
	return rec
}

// recordReader is a minimal kTLS stand-in: it opens the records that
// follow a handshake with the session's receive secret, starting at the
// session's sequence number.
type recordReader struct {
	t    testing.TB
	conn net.Conn
	s    *tls13.Session
	seq  uint64
}

func newRecordReader(t testing.TB, conn net.Conn, s *tls13.Session) *recordReader {
	return &recordReader{t: t, conn: conn, s: s, seq: s.RX.Seq}
}

// next reads and opens one record.
func (r *recordReader) next() (typ byte, content []byte) {
	r.t.Helper()
	rec := readRecord(r.t, r.conn, 10*time.Second)
	typ, content, err := openRecord(r.s.Suite, r.s.RX.Secret, r.seq, rec)
	if err != nil {
		r.t.Fatalf("opening the peer's record at sequence %d: %v", r.seq, err)
	}
	r.seq++
	return typ, content
}

// readData skips handshake records (NewSessionTicket) and returns the
// first application data; it reports how many it skipped.
func (r *recordReader) readData() (data []byte, tickets int) {
	r.t.Helper()
	for {
		typ, content := r.next()
		switch typ {
		case recordTypeApplicationData:
			return content, tickets
		case recordTypeHandshake:
			if len(content) == 0 || content[0] != 4 {
				r.t.Fatalf("unexpected post-handshake message type %d", content[0])
			}
			tickets++
		default:
			r.t.Fatalf("unexpected record type %d (content %x)", typ, content)
		}
	}
}

// recordWriter protects application data with the session's send secret.
type recordWriter struct {
	t    testing.TB
	conn net.Conn
	s    *tls13.Session
	seq  uint64
}

func newRecordWriter(t testing.TB, conn net.Conn, s *tls13.Session) *recordWriter {
	return &recordWriter{t: t, conn: conn, s: s, seq: s.TX.Seq}
}

func (w *recordWriter) write(data []byte) {
	w.t.Helper()
	rec, err := sealRecord(w.s.Suite, w.s.TX.Secret, w.seq, recordTypeApplicationData, data)
	if err != nil {
		w.t.Fatal(err)
	}
	w.seq++
	if _, err := w.conn.Write(rec); err != nil {
		w.t.Fatalf("writing a record: %v", err)
	}
}

// slowConn delays every read, so that whatever the peer sends after its
// last handshake record is already in the socket when the handshake reads
// that record: the situation in which crypto/tls reads ahead.
type slowConn struct {
	net.Conn
	delay time.Duration
}

func (c slowConn) Read(p []byte) (int, error) {
	time.Sleep(c.delay)
	return c.Conn.Read(p)
}

// pki is a CA with a server and a client credential.
type pki struct {
	ca             *certstest.CA
	server, client *certstest.Leaf
}

func newPKI(t testing.TB, kt certstest.KeyType) *pki {
	t.Helper()
	ca := certstest.NewCA(t, kt, "stdtls test CA")
	return &pki{
		ca:     ca,
		server: ca.Leaf(t, kt),
		client: ca.Leaf(t, kt, certstest.CN("client"), certstest.DNS("client.test")),
	}
}

func (p *pki) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost"}
}

func (p *pki) mtlsClientConfig() *tls.Config {
	c := p.clientConfig()
	c.Certificates = []tls.Certificate{p.client.TLS()}
	return c
}

func (p *pki) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server.TLS()}}
}

func (p *pki) mtlsServerConfig() *tls.Config {
	c := p.serverConfig()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.ClientCAs = p.ca.Pool()
	return c
}

// captureKeyLog is a tls.Config.KeyLogWriter for the test's own peers.
type captureKeyLog struct {
	mu    sync.Mutex
	lines [][]byte
}

func (k *captureKeyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lines = append(k.lines, bytes.Clone(p))
	return len(p), nil
}

func (k *captureKeyLog) secret(label string) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.lines {
		var kl keyLog
		if bytes.HasPrefix(l, []byte(label+" ")) {
			kl.Write(l)
			for _, s := range [][]byte{kl.clientAP, kl.serverAP, kl.clientHS, kl.serverHS} {
				if s != nil {
					return s
				}
			}
		}
	}
	return nil
}
