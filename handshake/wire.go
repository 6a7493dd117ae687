package handshake

import "log/slog"

// wireAttrs are the handshake line's attributes for what issue 12 added
// on the wire: the peer's record size limit when it sent one, and
// keylog=true on every line while traffic secrets are being logged.
func (d *Daemon) wireAttrs(res result) []slog.Attr {
	var attrs []slog.Attr
	if d.KeyLog != nil {
		attrs = append(attrs, slog.Bool("keylog", true))
	}
	if s := res.session; s != nil && s.PeerRecordSizeLimit != 0 {
		attrs = append(attrs, slog.Int("peer_record_size_limit", s.PeerRecordSizeLimit))
	}
	return attrs
}
