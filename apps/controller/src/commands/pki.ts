import { join } from "node:path";
import { DEFAULT_SERVER_HOSTS, initPkiDir, PKI_FILES, renewServerCert, rotateIssuer } from "@galette/pki";
import type { Command } from "commander";

const out = (text: string) => process.stdout.write(`${text}\n`);

const hostList = (text: string | undefined): string[] | undefined =>
  text
    ?.split(",")
    .map((h) => h.trim())
    .filter(Boolean);

const positiveInt = (what: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`${what} must be a positive whole number of days, got ${JSON.stringify(v)}`);
  return n;
};

export function registerPkiCommands(program: Command): void {
  const pki = program
    .command("pki")
    .description("The controller's certificate authorities (root CA, issuing CA, server certificate)");

  pki
    .command("init")
    .description(
      `Create the root CA (${PKI_FILES.caCert}, ${PKI_FILES.caKey}), the server certificate ` +
        `(${PKI_FILES.serverCert}, ${PKI_FILES.serverKey}) and the issuing CA ` +
        `(${PKI_FILES.issuerCert}, ${PKI_FILES.issuerKey}) in DIR`,
    )
    .requiredOption("--data <dir>", "controller data directory")
    .option(
      "--hosts <list>",
      "comma-separated DNS names / IPs the controller is reached at (server certificate SANs)",
      DEFAULT_SERVER_HOSTS.join(","),
    )
    .option("--force", "replace an existing CA (every enrolled device must be re-enrolled)")
    .action((flags: { data: string; hosts: string; force?: boolean }) => {
      const hosts = hostList(flags.hosts) ?? [];
      const result = initPkiDir(flags.data, { serverHosts: hosts, ...(flags.force ? { force: true } : {}) });
      out(
        `root CA "${result.caInfo.commonName}" (RSA-3072, valid until ${result.caInfo.notAfter.toISOString()})`,
      );
      out(
        `wrote ${flags.data}/${PKI_FILES.caCert}, ${PKI_FILES.caKey} (0600), ${PKI_FILES.issuerCert}, ` +
          `${PKI_FILES.issuerKey} (0600), ${PKI_FILES.serverCert}, ${PKI_FILES.serverKey} (0600)`,
      );
      out(`server certificate names: ${hosts.join(", ")}`);
      out(
        `${join(flags.data, PKI_FILES.caKey)} is the root key: the controller never reads it; ` +
          "move it offline (pki rotate-issuer and pki renew-server take it with --root-key)",
      );
    });

  pki
    .command("renew-server")
    .alias("server-cert")
    .description(
      "Issue a new server certificate signed by the root CA (needs the root key; restart the controller after)",
    )
    .requiredOption("--data <dir>", "controller data directory")
    .option("--root-key <file>", `the root CA key (default DIR/${PKI_FILES.caKey})`)
    .option("--hosts <list>", "comma-separated DNS names / IPs (default: those of the current certificate)")
    .option("--validity-days <n>", "certificate validity in days", positiveInt("--validity-days"))
    .action((flags: { data: string; rootKey?: string; hosts?: string; validityDays?: number }) => {
      const hosts = hostList(flags.hosts);
      const renewed = renewServerCert(flags.data, {
        ...(flags.rootKey ? { rootKeyPath: flags.rootKey } : {}),
        ...(hosts ? { hosts } : {}),
        ...(flags.validityDays ? { validityDays: flags.validityDays } : {}),
      });
      out(
        `wrote ${join(flags.data, PKI_FILES.serverCert)} for ${renewed.hosts.join(", ")}, valid until ` +
          `${renewed.notAfter.toISOString()}; restart the controller to use it (devices need nothing new)`,
      );
    });

  pki
    .command("rotate-issuer")
    .description(
      "Replace the issuing CA (needs the root key). Devices keep their bundles; certificates of the " +
        "previous issuer stay accepted until they expire or are revoked. Restart the controller after.",
    )
    .requiredOption("--data <dir>", "controller data directory")
    .option("--root-key <file>", `the root CA key (default DIR/${PKI_FILES.caKey})`)
    .option(
      "--drop-previous",
      "stop accepting certificates of every earlier issuer (after an issuing key leaked; re-enrol those devices)",
    )
    .option("--validity-days <n>", "issuing CA validity in days", positiveInt("--validity-days"))
    .action((flags: { data: string; rootKey?: string; dropPrevious?: boolean; validityDays?: number }) => {
      const result = rotateIssuer(flags.data, {
        ...(flags.rootKey ? { rootKeyPath: flags.rootKey } : {}),
        ...(flags.dropPrevious ? { dropPrevious: true } : {}),
        ...(flags.validityDays ? { validityDays: flags.validityDays } : {}),
      });
      out(
        `new issuing CA "${result.issuer.commonName}", valid until ${result.issuer.notAfter.toISOString()}`,
      );
      out(
        result.previous.length === 0
          ? "no earlier issuing CA is accepted any more"
          : `still accepted until they expire: ${result.previous.map((p) => `"${p.commonName}"`).join(", ")}`,
      );
      out("restart the controller to enrol with the new issuing CA");
    });
}
