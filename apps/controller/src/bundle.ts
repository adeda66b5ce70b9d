import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isRootCaCertificate, writePrivateKey } from "@galette/pki";
import {
  type AgentConfigInput,
  BUNDLE_FILES,
  type EnrollDeviceResponse,
  releaseKeyId,
  releasePublicKey,
} from "@galette/protocol";

/**
 * Writes the device bundle the operator copies to the device: device.crt, device.key
 * (0600), ca.crt (the root CA) and agent.json pointing at the controller. Refuses to overwrite an
 * existing device.key (it may belong to a device still in service). `releaseKeys` (base64
 * DER SPKI) are the release keys the device pins: written into agent.json and, for the
 * operator's reference, as release-<key id>.pub.
 */
export function writeDeviceBundle(
  outDir: string,
  enrolled: EnrollDeviceResponse,
  releaseKeys: readonly string[] = [],
): string[] {
  // The agent verifies the controller's server certificate, which the root CA signs, with
  // this file alone: anything else (an issuing CA, a leaf) would fail on the device.
  if (!isRootCaCertificate(enrolled.caPem)) {
    throw new Error(
      "the enrolment's caPem is not a self-signed root CA certificate: the device could not verify the controller with it",
    );
  }
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const keyPath = join(outDir, BUNDLE_FILES.key);
  if (existsSync(keyPath)) throw new Error(`${keyPath} exists: choose an empty --out directory`);
  const config: AgentConfigInput = {
    controllerUrl: enrolled.controllerUrl,
    ...(enrolled.controllerUrls && enrolled.controllerUrls.length > 1
      ? { controllerUrls: enrolled.controllerUrls }
      : {}),
    device: enrolled.name,
    certFile: BUNDLE_FILES.cert,
    keyFile: BUNDLE_FILES.key,
    caFile: BUNDLE_FILES.ca,
    releaseKeys: [...releaseKeys],
  };
  const keyFiles = releaseKeys.map((key) => {
    const file = join(outDir, `release-${releaseKeyId(key).slice(0, 16)}.pub`);
    writeFileSync(file, releasePublicKey(key).export({ format: "pem", type: "spki" }), { mode: 0o644 });
    return file;
  });
  writeFileSync(join(outDir, BUNDLE_FILES.cert), enrolled.certPem, { mode: 0o644 });
  writePrivateKey(keyPath, enrolled.keyPem);
  writeFileSync(join(outDir, BUNDLE_FILES.ca), enrolled.caPem, { mode: 0o644 });
  writeFileSync(join(outDir, BUNDLE_FILES.config), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
  chmodSync(outDir, 0o700);
  return [...Object.values(BUNDLE_FILES).map((name) => join(outDir, name)), ...keyFiles];
}
