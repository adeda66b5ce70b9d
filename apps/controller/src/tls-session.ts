/**
 * TLS session resumption on the device API. A restarted controller is met by its whole
 * fleet reconnecting at once; a full mutual-TLS handshake costs the controller an RSA
 * signature, a client chain verification and a certificate parse per connection, a
 * resumed one none of those. Resumption across a restart needs ticket keys that survive
 * it: they are derived from the controller's PKI rather than stored, so they change (and
 * every ticket issued before becomes useless) whenever the issuing key, the server key or
 * certificate, or the set of CAs client certificates are verified against changes —
 * `pki rotate-issuer` (with or without `--drop-previous`), `pki renew-server`, a retired
 * issuer expiring.
 *
 * Whoever can forge a ticket can claim any client certificate on resumption, and whoever
 * can decrypt one can resume as its device: the keys come from the issuing key (which
 * already lets its holder mint device certificates) and the server key, both in the data
 * directory (0600). A resumed session is still checked on every request like a new one
 * (plugins/auth.ts): certificate validity now, enrolment, the exact issued certificate and
 * revocation. The handshake-time chain verification a resumed session carries over cannot
 * go stale beyond what the derivation covers: the CA set is part of it.
 */
import { createHash, hkdfSync } from "node:crypto";
import type { ControllerPki } from "@galette/pki";

/** How long a ticket can resume a session: TLS 1.3's maximum (RFC 8446 §4.6.1), in seconds. */
export const TLS_SESSION_LIFETIME_S = 7 * 24 * 3600;

/** The OpenSSL session ID context: constant, so sessions survive a restart with other arguments. */
export const TLS_SESSION_CONTEXT = "galette-device-api";

/** Node's `ticketKeys`: 48 bytes (key name, AES key, HMAC key) derived from the PKI. */
export function tlsTicketKeys(pki: ControllerPki): Buffer {
  const secret = Buffer.from(`${pki.issuer.keyPem}\0${pki.server.keyPem}`);
  const context = createHash("sha256");
  for (const pem of [pki.server.certPem, pki.issuer.certPem, ...pki.clientCaPems])
    context.update(pem).update("\0");
  return Buffer.from(hkdfSync("sha256", secret, context.digest(), "galette tls session tickets v1", 48));
}
