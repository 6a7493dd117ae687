package ktlstest

// MaxPayload is the plaintext kTLS puts in one record when no
// TLS_TX_MAX_PAYLOAD_LEN is set (TLS_MAX_PAYLOAD_SIZE).
const MaxPayload = 1 << 14

// SealAll protects data as kTLS TX sends one write: in records of at most
// maxPayload bytes of plaintext (ktls.Options.TxMaxPayload; 0 means
// MaxPayload), each followed by its content type.
func (d *Direction) SealAll(typ uint8, data []byte, maxPayload uint16) []byte {
	n := int(maxPayload)
	if n == 0 {
		n = MaxPayload
	}
	var out []byte
	for len(data) > 0 {
		m := min(n, len(data))
		out = append(out, d.Seal(typ, data[:m])...)
		data = data[m:]
	}
	return out
}
