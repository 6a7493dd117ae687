package tls13

import (
	"errors"
	"fmt"
)

// An Alert is a TLS alert description (RFC 8446, 6).
type Alert uint8

// Alert descriptions.
const (
	AlertCloseNotify            Alert = 0
	AlertUnexpectedMessage      Alert = 10
	AlertBadRecordMAC           Alert = 20
	AlertRecordOverflow         Alert = 22
	AlertHandshakeFailure       Alert = 40
	AlertBadCertificate         Alert = 42
	AlertUnsupportedCertificate Alert = 43
	AlertCertificateRevoked     Alert = 44
	AlertCertificateExpired     Alert = 45
	AlertCertificateUnknown     Alert = 46
	AlertIllegalParameter       Alert = 47
	AlertUnknownCA              Alert = 48
	AlertAccessDenied           Alert = 49
	AlertDecodeError            Alert = 50
	AlertDecryptError           Alert = 51
	AlertProtocolVersion        Alert = 70
	AlertInsufficientSecurity   Alert = 71
	AlertInternalError          Alert = 80
	AlertInappropriateFallback  Alert = 86
	AlertUserCanceled           Alert = 90
	AlertMissingExtension       Alert = 109
	AlertUnsupportedExtension   Alert = 110
	AlertUnrecognizedName       Alert = 112
	AlertBadCertificateStatus   Alert = 113
	AlertUnknownPSKIdentity     Alert = 115
	AlertCertificateRequired    Alert = 116
	AlertNoApplicationProtocol  Alert = 120
)

var alertNames = map[Alert]string{
	AlertCloseNotify:            "close_notify",
	AlertUnexpectedMessage:      "unexpected_message",
	AlertBadRecordMAC:           "bad_record_mac",
	AlertRecordOverflow:         "record_overflow",
	AlertHandshakeFailure:       "handshake_failure",
	AlertBadCertificate:         "bad_certificate",
	AlertUnsupportedCertificate: "unsupported_certificate",
	AlertCertificateRevoked:     "certificate_revoked",
	AlertCertificateExpired:     "certificate_expired",
	AlertCertificateUnknown:     "certificate_unknown",
	AlertIllegalParameter:       "illegal_parameter",
	AlertUnknownCA:              "unknown_ca",
	AlertAccessDenied:           "access_denied",
	AlertDecodeError:            "decode_error",
	AlertDecryptError:           "decrypt_error",
	AlertProtocolVersion:        "protocol_version",
	AlertInsufficientSecurity:   "insufficient_security",
	AlertInternalError:          "internal_error",
	AlertInappropriateFallback:  "inappropriate_fallback",
	AlertUserCanceled:           "user_canceled",
	AlertMissingExtension:       "missing_extension",
	AlertUnsupportedExtension:   "unsupported_extension",
	AlertUnrecognizedName:       "unrecognized_name",
	AlertBadCertificateStatus:   "bad_certificate_status_response",
	AlertUnknownPSKIdentity:     "unknown_psk_identity",
	AlertCertificateRequired:    "certificate_required",
	AlertNoApplicationProtocol:  "no_application_protocol",
}

func (a Alert) String() string {
	if n, ok := alertNames[a]; ok {
		return n
	}
	return fmt.Sprintf("alert(%d)", uint8(a))
}

// An AlertError is a handshake or record failure tied to a TLS alert:
// either one this side sent (Received false) because of Err, or one the
// peer sent (Received true).
type AlertError struct {
	Alert    Alert
	Received bool
	Err      error // the local cause; nil for received alerts
}

func (e *AlertError) Error() string {
	if e.Received {
		return "tls13: peer sent alert " + e.Alert.String()
	}
	if e.Err != nil {
		return fmt.Sprintf("tls13: %v (sent alert %s)", e.Err, e.Alert)
	}
	return "tls13: sent alert " + e.Alert.String()
}

func (e *AlertError) Unwrap() error { return e.Err }

// alertf builds the error for a local failure; the connection sends the
// alert once, when the error reaches it.
func alertf(a Alert, format string, args ...any) error {
	return &AlertError{Alert: a, Err: fmt.Errorf(format, args...)}
}

// ErrUnknownPSK is what a server's PSK lookup returns (possibly wrapped)
// when it has no key for an identity; any other error aborts the
// handshake with internal_error.
var ErrUnknownPSK = errors.New("tls13: unknown PSK identity")
