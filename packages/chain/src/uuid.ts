import { createHash } from "node:crypto";

/**
 * Fixed namespace for Galette NF instance UUIDs. Never change it: UUIDs identify NF
 * instances across pushes, and agents diff chains by UUID.
 */
export const GALETTE_NAMESPACE = "6c0a6f1e-3b1d-4f5e-9a57-2f4d1c8e0b7a";

function uuidBytes(uuid: string): Buffer {
  const hex = uuid.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not a UUID: ${JSON.stringify(uuid)}`);
  return Buffer.from(hex, "hex");
}

/** RFC 9562 §5.5: SHA-1 over namespace bytes + name, version 5, variant 10. */
export function uuidV5(name: string, namespace: string): string {
  const digest = createHash("sha1").update(uuidBytes(namespace)).update(name, "utf8").digest();
  const b = digest.subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The UUID of an NF instance: UUIDv5(GALETTE_NAMESPACE, "chain/instance[/buildHash]").
 * Until NFs are built there is no build hash; the NF compiler passes it so a changed NF
 * gets a new UUID and an unchanged one keeps it.
 */
export function instanceUuid(chainName: string, instanceName: string, buildHash?: string): string {
  const name = buildHash ? `${chainName}/${instanceName}/${buildHash}` : `${chainName}/${instanceName}`;
  return uuidV5(name, GALETTE_NAMESPACE);
}
