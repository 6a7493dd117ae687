package handshake

import (
	"context"
	"fmt"
	"net"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// X509Loader opens what x509 handshakes need beyond the policy's files:
// TPM-resident private keys.
type X509Loader interface{}

// x509Handshake runs an x509 or UNAUTH handshake through crypto/tls.
func (d *Daemon) x509Handshake(ctx context.Context, conn net.Conn, req genl.Request, o *outcome, settings *config.Settings) (*tls13.Session, error) {
	return nil, fmt.Errorf("%w: x509 handshakes are not wired yet", errUnsupported)
}
