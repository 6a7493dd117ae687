// Package config turns tlshd-go's TOML policy file into immutable values.
//
// A policy has four parts (config/example.toml documents every key):
//
//   - [global]: process-wide settings (log level, concurrency bound,
//     keyrings to link, fallback handshake timeout, TPM device);
//   - [client] and [server]: the settings for each handshake role;
//   - [[peer]]: an ordered list of rules, each with a [peer.match] table.
//     The first rule whose match fields all match a request wins, and its
//     settings override the role's settings field by field.
//
// Load or Parse checks the whole file and reports every problem at once,
// each as an *Error naming the file, the line and the key:
//
//	/etc/tlshd-go/config.toml:12: peer[1].groups: unknown group "x448"
//
// Peer indices in key names count from 0 in file order.
//
// Load (and Compile) also read every file the policy names, once per
// policy generation: trust anchors, CRLs, certificates and keys are
// parsed and name patterns compiled there, never per handshake
// (Settings.Credentials), and a missing or broken file fails the load with
// the line of the key that names it. Parse reads no files. A file in
// tlshd's format (tlshd.conf) is converted by Load with Import.
//
// A *Policy never changes after Parse returns and is safe for concurrent
// use. Resolve does no allocation: the merged settings of every rule are
// computed once, at load time, so a server can resolve before the
// ClientHello and again once it knows the PSK identity. A Holder swaps
// policies atomically on SIGHUP; handshakes keep the *Policy they started
// with.
//
// Import converts the reference daemon's tlshd.conf (GLib key file) into
// this format.
package config
