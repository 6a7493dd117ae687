package systemd

import _ "embed"

// UnitName is the unit's name; AliasName is the alias that stands in for
// ktls-utils' unit.
const (
	UnitName  = "tlshd-go.service"
	AliasName = "tlshd.service"
)

// Unit is the text of tlshd-go.service, for installers and `tlshd-go`
// subcommands that print it.
//
//go:embed tlshd-go.service
var Unit string

// TPMDropIn is tlshd-go.service.d/tpm.conf, which opens /dev/tpmrm0 to the
// service for TPM-backed private keys.
//
//go:embed tlshd-go.service.d/tpm.conf
var TPMDropIn string
